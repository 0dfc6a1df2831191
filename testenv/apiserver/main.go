// Command apiserver is egressgw's test API server: a real Kubernetes API server assembled from
// k8s.io/apiserver and k8s.io/apiextensions-apiserver, storing in etcd. It serves the built-in
// resources egressgw touches plus CustomResourceDefinitions, so controller tests talk to the same
// machinery (watch cache, bookmarks, field managers, CEL) as a real cluster, without kube-apiserver.
//
// Identity: authentication and authorization are off in effect (every request is allowed and is in
// system:masters), but the user name is taken from the bearer token so the audit log tells callers
// apart: "Authorization: Bearer <name>" runs the request as user <name>; no token runs it as "admin".
// Impersonate-User headers work as on a real server.
//
// Simplifications versus a real cluster (no controllers run here): no garbage collection of
// ownerReferences, namespaces are deleted at once without emptying them, pods are deleted without a
// grace period, services get no cluster IP, and built-in objects are not validated or defaulted.
package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	policyv1 "k8s.io/api/policy/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsv1beta1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1beta1"
	extensionsapiserver "k8s.io/apiextensions-apiserver/pkg/apiserver"
	extensionsoptions "k8s.io/apiextensions-apiserver/pkg/cmd/server/options"
	extensionsopenapi "k8s.io/apiextensions-apiserver/pkg/generated/openapi"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/validation/field"
	utilversion "k8s.io/apimachinery/pkg/version"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizerfactory"
	discoveryendpoint "k8s.io/apiserver/pkg/endpoints/discovery/aggregated"
	openapinamer "k8s.io/apiserver/pkg/endpoints/openapi"
	"k8s.io/apiserver/pkg/registry/generic"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"
	"k8s.io/apiserver/pkg/registry/rest"
	genericapiserver "k8s.io/apiserver/pkg/server"
	genericoptions "k8s.io/apiserver/pkg/server/options"
	"k8s.io/apiserver/pkg/storage/names"
	"k8s.io/apiserver/pkg/util/compatibility"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/klog/v2"
	"k8s.io/kube-openapi/pkg/common"
	"k8s.io/kube-openapi/pkg/validation/spec"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"
)

var (
	scheme = runtime.NewScheme()
	codecs = serializer.NewCodecFactory(scheme)
)

// resource describes one served built-in resource. Every field that is not metadata or status is
// treated as "spec" by the generic strategies below.
type resource struct {
	gv           schema.GroupVersion
	plural       string
	singular     string
	namespaced   bool
	status       bool // has a /status subresource; main-resource writes keep status
	keepStatus   bool // keep the client's status on create (nodes register with their status)
	shortNames   []string
	categories   []string
	obj          func() runtime.Object
	list         func() runtime.Object
	extraFields  func(obj runtime.Object) fields.Set
	onCreate     func(obj runtime.Object)
	selectorKeys []string
}

func podFields(obj runtime.Object) fields.Set {
	p := obj.(*corev1.Pod)
	return fields.Set{
		"spec.nodeName":            p.Spec.NodeName,
		"spec.restartPolicy":       string(p.Spec.RestartPolicy),
		"spec.schedulerName":       p.Spec.SchedulerName,
		"spec.serviceAccountName":  p.Spec.ServiceAccountName,
		"spec.hostNetwork":         strconv.FormatBool(p.Spec.HostNetwork),
		"status.phase":             string(p.Status.Phase),
		"status.podIP":             p.Status.PodIP,
		"status.nominatedNodeName": p.Status.NominatedNodeName,
	}
}

func nodeFields(obj runtime.Object) fields.Set {
	return fields.Set{"spec.unschedulable": strconv.FormatBool(obj.(*corev1.Node).Spec.Unschedulable)}
}

func eventFields(obj runtime.Object) fields.Set {
	e := obj.(*corev1.Event)
	return fields.Set{
		"involvedObject.kind":            e.InvolvedObject.Kind,
		"involvedObject.namespace":       e.InvolvedObject.Namespace,
		"involvedObject.name":            e.InvolvedObject.Name,
		"involvedObject.uid":             string(e.InvolvedObject.UID),
		"involvedObject.apiVersion":      e.InvolvedObject.APIVersion,
		"involvedObject.resourceVersion": e.InvolvedObject.ResourceVersion,
		"involvedObject.fieldPath":       e.InvolvedObject.FieldPath,
		"reason":                         e.Reason,
		"reportingComponent":             e.ReportingController,
		"source":                         e.Source.Component,
		"type":                           e.Type,
	}
}

func keys(s fields.Set) []string {
	out := make([]string, 0, len(s))
	for k := range s {
		out = append(out, k)
	}
	return out
}

func resources() []resource {
	core := corev1.SchemeGroupVersion
	apps := appsv1.SchemeGroupVersion
	rbac := rbacv1.SchemeGroupVersion
	return []resource{
		{gv: core, plural: "nodes", singular: "node", status: true, keepStatus: true, shortNames: []string{"no"},
			obj: func() runtime.Object { return &corev1.Node{} }, list: func() runtime.Object { return &corev1.NodeList{} },
			extraFields: nodeFields, selectorKeys: keys(nodeFields(&corev1.Node{}))},
		{gv: core, plural: "pods", singular: "pod", namespaced: true, status: true, shortNames: []string{"po"}, categories: []string{"all"},
			obj: func() runtime.Object { return &corev1.Pod{} }, list: func() runtime.Object { return &corev1.PodList{} },
			extraFields: podFields, selectorKeys: keys(podFields(&corev1.Pod{})),
			// As the real registry does: a new pod is Pending whatever status the client sent.
			onCreate: func(o runtime.Object) { o.(*corev1.Pod).Status = corev1.PodStatus{Phase: corev1.PodPending} }},
		{gv: core, plural: "namespaces", singular: "namespace", status: true, shortNames: []string{"ns"},
			obj: func() runtime.Object { return &corev1.Namespace{} }, list: func() runtime.Object { return &corev1.NamespaceList{} },
			extraFields: func(o runtime.Object) fields.Set {
				return fields.Set{"status.phase": string(o.(*corev1.Namespace).Status.Phase)}
			},
			selectorKeys: []string{"status.phase"},
			onCreate: func(o runtime.Object) {
				o.(*corev1.Namespace).Status = corev1.NamespaceStatus{Phase: corev1.NamespaceActive}
			}},
		{gv: core, plural: "services", singular: "service", namespaced: true, status: true, shortNames: []string{"svc"}, categories: []string{"all"},
			obj: func() runtime.Object { return &corev1.Service{} }, list: func() runtime.Object { return &corev1.ServiceList{} }},
		{gv: core, plural: "configmaps", singular: "configmap", namespaced: true, shortNames: []string{"cm"},
			obj: func() runtime.Object { return &corev1.ConfigMap{} }, list: func() runtime.Object { return &corev1.ConfigMapList{} }},
		{gv: core, plural: "secrets", singular: "secret", namespaced: true,
			obj: func() runtime.Object { return &corev1.Secret{} }, list: func() runtime.Object { return &corev1.SecretList{} },
			extraFields:  func(o runtime.Object) fields.Set { return fields.Set{"type": string(o.(*corev1.Secret).Type)} },
			selectorKeys: []string{"type"}},
		{gv: core, plural: "serviceaccounts", singular: "serviceaccount", namespaced: true, shortNames: []string{"sa"},
			obj: func() runtime.Object { return &corev1.ServiceAccount{} }, list: func() runtime.Object { return &corev1.ServiceAccountList{} }},
		{gv: core, plural: "events", singular: "event", namespaced: true, shortNames: []string{"ev"},
			obj: func() runtime.Object { return &corev1.Event{} }, list: func() runtime.Object { return &corev1.EventList{} },
			extraFields: eventFields, selectorKeys: keys(eventFields(&corev1.Event{}))},
		{gv: coordinationv1.SchemeGroupVersion, plural: "leases", singular: "lease", namespaced: true,
			obj: func() runtime.Object { return &coordinationv1.Lease{} }, list: func() runtime.Object { return &coordinationv1.LeaseList{} }},
		{gv: eventsv1.SchemeGroupVersion, plural: "events", singular: "event", namespaced: true, shortNames: []string{"ev"},
			obj: func() runtime.Object { return &eventsv1.Event{} }, list: func() runtime.Object { return &eventsv1.EventList{} }},
		{gv: apps, plural: "deployments", singular: "deployment", namespaced: true, status: true, shortNames: []string{"deploy"}, categories: []string{"all"},
			obj: func() runtime.Object { return &appsv1.Deployment{} }, list: func() runtime.Object { return &appsv1.DeploymentList{} }},
		{gv: apps, plural: "daemonsets", singular: "daemonset", namespaced: true, status: true, shortNames: []string{"ds"}, categories: []string{"all"},
			obj: func() runtime.Object { return &appsv1.DaemonSet{} }, list: func() runtime.Object { return &appsv1.DaemonSetList{} }},
		{gv: policyv1.SchemeGroupVersion, plural: "poddisruptionbudgets", singular: "poddisruptionbudget", namespaced: true, status: true, shortNames: []string{"pdb"},
			obj: func() runtime.Object { return &policyv1.PodDisruptionBudget{} }, list: func() runtime.Object { return &policyv1.PodDisruptionBudgetList{} }},
		{gv: rbac, plural: "roles", singular: "role", namespaced: true,
			obj: func() runtime.Object { return &rbacv1.Role{} }, list: func() runtime.Object { return &rbacv1.RoleList{} }},
		{gv: rbac, plural: "rolebindings", singular: "rolebinding", namespaced: true,
			obj: func() runtime.Object { return &rbacv1.RoleBinding{} }, list: func() runtime.Object { return &rbacv1.RoleBindingList{} }},
		{gv: rbac, plural: "clusterroles", singular: "clusterrole",
			obj: func() runtime.Object { return &rbacv1.ClusterRole{} }, list: func() runtime.Object { return &rbacv1.ClusterRoleList{} }},
		{gv: rbac, plural: "clusterrolebindings", singular: "clusterrolebinding",
			obj: func() runtime.Object { return &rbacv1.ClusterRoleBinding{} }, list: func() runtime.Object { return &rbacv1.ClusterRoleBindingList{} }},
	}
}

// registerTypes registers every served k8s.io/api type under its version AND as its group's internal
// version: the same Go type on both sides means the scheme never needs conversion functions.
func registerTypes(rs []resource) {
	seen := map[schema.GroupVersion]bool{}
	for _, r := range rs {
		internal := schema.GroupVersion{Group: r.gv.Group, Version: runtime.APIVersionInternal}
		scheme.AddKnownTypes(r.gv, r.obj(), r.list())
		scheme.AddKnownTypes(internal, r.obj(), r.list())
		if !seen[r.gv] {
			seen[r.gv] = true
			metav1.AddToGroupVersion(scheme, r.gv)
		}
		if r.selectorKeys != nil {
			allowed := map[string]bool{"metadata.name": true}
			if r.namespaced {
				allowed["metadata.namespace"] = true
			}
			for _, k := range r.selectorKeys {
				allowed[k] = true
			}
			kind := kindOf(r.obj())
			if err := scheme.AddFieldLabelConversionFunc(r.gv.WithKind(kind), func(label, value string) (string, string, error) {
				if allowed[label] {
					return label, value, nil
				}
				return "", "", fmt.Errorf("field label not supported: %s", label)
			}); err != nil {
				panic(err)
			}
		}
	}
	metav1.AddToGroupVersion(scheme, schema.GroupVersion{Version: "v1"})
	unversioned := schema.GroupVersion{Group: "", Version: "v1"}
	scheme.AddUnversionedTypes(unversioned, &metav1.Status{}, &metav1.APIVersions{}, &metav1.APIGroupList{}, &metav1.APIGroup{}, &metav1.APIResourceList{})
}

func kindOf(obj runtime.Object) string { return reflect.TypeOf(obj).Elem().Name() }

// ---- strategies ----

type strategy struct {
	runtime.ObjectTyper
	names.NameGenerator
	r resource
}

func (s strategy) NamespaceScoped() bool { return s.r.namespaced }

func (s strategy) PrepareForCreate(_ context.Context, obj runtime.Object) {
	if s.r.status && !s.r.keepStatus {
		resetField(obj, "Status")
	}
	if s.r.onCreate != nil {
		s.r.onCreate(obj)
	}
	if m, err := meta.Accessor(obj); err == nil {
		m.SetGeneration(1)
	}
}

func (s strategy) PrepareForUpdate(_ context.Context, obj, old runtime.Object) {
	if s.r.status {
		copyField(obj, old, "Status")
	}
	nm, _ := meta.Accessor(obj)
	om, _ := meta.Accessor(old)
	nm.SetGeneration(om.GetGeneration())
	if !reflect.DeepEqual(specOf(obj), specOf(old)) {
		nm.SetGeneration(om.GetGeneration() + 1)
	}
}

func (strategy) Validate(context.Context, runtime.Object) field.ErrorList  { return nil }
func (strategy) WarningsOnCreate(context.Context, runtime.Object) []string { return nil }
func (strategy) Canonicalize(runtime.Object)                               {}
func (strategy) AllowCreateOnUpdate() bool                                 { return false }
func (strategy) AllowUnconditionalUpdate() bool                            { return true }
func (strategy) ValidateUpdate(context.Context, runtime.Object, runtime.Object) field.ErrorList {
	return nil
}
func (strategy) WarningsOnUpdate(context.Context, runtime.Object, runtime.Object) []string {
	return nil
}

func (s strategy) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	if !s.r.status {
		return nil
	}
	return map[fieldpath.APIVersion]*fieldpath.Set{
		fieldpath.APIVersion(s.r.gv.String()): fieldpath.NewSet(fieldpath.MakePathOrDie("status")),
	}
}

// statusStrategy serves /status: only status (and metadata other than owners) may change.
type statusStrategy struct{ strategy }

func (s statusStrategy) PrepareForUpdate(_ context.Context, obj, old runtime.Object) {
	nv, ov := reflect.ValueOf(obj).Elem(), reflect.ValueOf(old).Elem()
	for i := 0; i < nv.NumField(); i++ {
		switch nv.Type().Field(i).Name {
		case "TypeMeta", "ObjectMeta", "Status":
		default:
			nv.Field(i).Set(ov.Field(i))
		}
	}
	nm, _ := meta.Accessor(obj)
	om, _ := meta.Accessor(old)
	nm.SetGeneration(om.GetGeneration())
	nm.SetOwnerReferences(om.GetOwnerReferences())
	nm.SetDeletionTimestamp(om.GetDeletionTimestamp())
}

func (s statusStrategy) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	set := fieldpath.NewSet()
	t := reflect.TypeOf(s.r.obj()).Elem()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		switch f.Name {
		case "TypeMeta", "ObjectMeta", "Status":
			continue
		}
		name := strings.Split(f.Tag.Get("json"), ",")[0]
		if name != "" && name != "-" {
			set.Insert(fieldpath.MakePathOrDie(name))
		}
	}
	return map[fieldpath.APIVersion]*fieldpath.Set{fieldpath.APIVersion(s.r.gv.String()): set}
}

func resetField(obj runtime.Object, name string) {
	f := reflect.ValueOf(obj).Elem().FieldByName(name)
	if f.IsValid() {
		f.Set(reflect.Zero(f.Type()))
	}
}

func copyField(dst, src runtime.Object, name string) {
	d := reflect.ValueOf(dst).Elem().FieldByName(name)
	if d.IsValid() {
		d.Set(reflect.ValueOf(src).Elem().FieldByName(name))
	}
}

// specOf returns every top-level field that is neither metadata nor status, for generation bumps.
func specOf(obj runtime.Object) []any {
	v := reflect.ValueOf(obj).Elem()
	var out []any
	for i := 0; i < v.NumField(); i++ {
		switch v.Type().Field(i).Name {
		case "TypeMeta", "ObjectMeta", "Status":
		default:
			out = append(out, v.Field(i).Interface())
		}
	}
	return out
}

// ---- storage ----

type store struct {
	*genericregistry.Store
	r resource
}

func (s *store) ShortNames() []string { return s.r.shortNames }
func (s *store) Categories() []string { return s.r.categories }

type statusStore struct{ store *genericregistry.Store }

func (s *statusStore) New() runtime.Object { return s.store.New() }
func (s *statusStore) Destroy()            {}
func (s *statusStore) Get(ctx context.Context, name string, o *metav1.GetOptions) (runtime.Object, error) {
	return s.store.Get(ctx, name, o)
}
func (s *statusStore) Update(ctx context.Context, name string, objInfo rest.UpdatedObjectInfo, cv rest.ValidateObjectFunc, uv rest.ValidateObjectUpdateFunc, _ bool, o *metav1.UpdateOptions) (runtime.Object, bool, error) {
	return s.store.Update(ctx, name, objInfo, cv, uv, false, o)
}
func (s *statusStore) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	return s.store.GetResetFields()
}

func newStorage(r resource, opts generic.RESTOptionsGetter) (map[string]rest.Storage, error) {
	st := strategy{ObjectTyper: scheme, NameGenerator: names.SimpleNameGenerator, r: r}
	gr := schema.GroupResource{Group: r.gv.Group, Resource: r.plural}
	s := &genericregistry.Store{
		NewFunc:                   r.obj,
		NewListFunc:               r.list,
		DefaultQualifiedResource:  gr,
		SingularQualifiedResource: schema.GroupResource{Group: r.gv.Group, Resource: r.singular},
		CreateStrategy:            st,
		UpdateStrategy:            st,
		DeleteStrategy:            st,
		ResetFieldsStrategy:       st,
		TableConvertor:            rest.NewDefaultTableConvertor(gr),
	}
	attrs := func(obj runtime.Object) (labels.Set, fields.Set, error) {
		m, err := meta.Accessor(obj)
		if err != nil {
			return nil, nil, err
		}
		fs := fields.Set{"metadata.name": m.GetName()}
		if r.namespaced {
			fs["metadata.namespace"] = m.GetNamespace()
		}
		if r.extraFields != nil {
			for k, v := range r.extraFields(obj) {
				fs[k] = v
			}
		}
		return labels.Set(m.GetLabels()), fs, nil
	}
	if err := s.CompleteWithOptions(&generic.StoreOptions{RESTOptions: opts, AttrFunc: attrs}); err != nil {
		return nil, err
	}
	out := map[string]rest.Storage{r.plural: &store{Store: s, r: r}}
	if r.status {
		ss := *s
		sst := statusStrategy{st}
		ss.CreateStrategy, ss.DeleteStrategy = nil, nil
		ss.UpdateStrategy, ss.ResetFieldsStrategy = sst, sst
		out[r.plural+"/status"] = &statusStore{store: &ss}
	}
	return out, nil
}

// ---- OpenAPI ----

// openAPIDefinitions gives the field manager a model for every served type: the generated meta
// definitions that apiextensions-apiserver ships, and for each built-in kind an open object schema
// (typed metadata, anything else preserved) keyed by the type's own OpenAPIModelName.
func openAPIDefinitions(ref common.ReferenceCallback) map[string]common.OpenAPIDefinition {
	defs := extensionsopenapi.GetOpenAPIDefinitions(ref)
	objectMeta := metav1.ObjectMeta{}.OpenAPIModelName()
	listMeta := metav1.ListMeta{}.OpenAPIModelName()
	for _, t := range scheme.AllKnownTypes() {
		name := modelName(t)
		if _, ok := defs[name]; ok {
			continue
		}
		props := map[string]spec.Schema{
			"apiVersion": *spec.StringProperty(),
			"kind":       *spec.StringProperty(),
		}
		deps := []string{}
		if _, ok := t.FieldByName("ObjectMeta"); ok {
			props["metadata"] = spec.Schema{SchemaProps: spec.SchemaProps{Default: map[string]any{}, Ref: ref(objectMeta)}}
			deps = append(deps, objectMeta)
		} else if _, ok := t.FieldByName("ListMeta"); ok {
			props["metadata"] = spec.Schema{SchemaProps: spec.SchemaProps{Default: map[string]any{}, Ref: ref(listMeta)}}
			deps = append(deps, listMeta)
		}
		s := spec.Schema{
			SchemaProps: spec.SchemaProps{Type: []string{"object"}, Properties: props},
			VendorExtensible: spec.VendorExtensible{Extensions: spec.Extensions{
				"x-kubernetes-preserve-unknown-fields": true,
			}},
		}
		defs[name] = common.OpenAPIDefinition{Schema: s, Dependencies: deps}
	}
	return defs
}

func modelName(t reflect.Type) string {
	if n, ok := reflect.New(t).Interface().(interface{ OpenAPIModelName() string }); ok {
		return n.OpenAPIModelName()
	}
	return strings.ReplaceAll(t.PkgPath()+"."+t.Name(), "/", ".")
}

// ---- legacy /apis discovery for CRD groups ----

// Aggregated discovery is shared with the apiextensions server, but the legacy /apis list is owned
// by the top server only; mirror CRD groups into it so old-style clients see them too.
func mirrorCRDGroups(top *genericapiserver.GenericAPIServer, ext *extensionsapiserver.CustomResourceDefinitions) {
	inf := ext.Informers.Apiextensions().V1().CustomResourceDefinitions()
	known := map[string]bool{}
	sync := func() {
		crds, err := inf.Lister().List(labels.Everything())
		if err != nil {
			return
		}
		groups := map[string]map[string]bool{}
		for _, c := range crds {
			if groups[c.Spec.Group] == nil {
				groups[c.Spec.Group] = map[string]bool{}
			}
			for _, v := range c.Spec.Versions {
				if v.Served {
					groups[c.Spec.Group][v.Name] = true
				}
			}
		}
		for g, vs := range groups {
			versions := make([]string, 0, len(vs))
			for v := range vs {
				versions = append(versions, v)
			}
			if len(versions) == 0 {
				continue
			}
			sort.Slice(versions, func(i, j int) bool {
				return utilversion.CompareKubeAwareVersionStrings(versions[i], versions[j]) > 0
			})
			apiGroup := metav1.APIGroup{Name: g}
			for _, v := range versions {
				apiGroup.Versions = append(apiGroup.Versions, metav1.GroupVersionForDiscovery{GroupVersion: g + "/" + v, Version: v})
			}
			apiGroup.PreferredVersion = apiGroup.Versions[0]
			top.DiscoveryGroupManager.AddGroup(apiGroup)
			known[g] = true
		}
		for g := range known {
			if _, ok := groups[g]; !ok {
				top.DiscoveryGroupManager.RemoveGroup(g)
				delete(known, g)
			}
		}
	}
	_, _ = inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { sync() },
		UpdateFunc: func(any, any) { sync() },
		DeleteFunc: func(any) { sync() },
	})
	v1 := metav1.GroupVersionForDiscovery{GroupVersion: apiextensionsv1.SchemeGroupVersion.String(), Version: "v1"}
	top.DiscoveryGroupManager.AddGroup(metav1.APIGroup{Name: apiextensionsv1.GroupName, Versions: []metav1.GroupVersionForDiscovery{v1}, PreferredVersion: v1})
}

// ---- identity ----

// tokenAsUser maps "Bearer <name>" to user <name> (no token: "admin"); everyone is in
// system:masters, so nothing is denied, but the audit log records who asked.
var tokenAsUser = authenticator.RequestFunc(func(req *http.Request) (*authenticator.Response, bool, error) {
	name := "admin"
	if h := req.Header.Get("Authorization"); strings.HasPrefix(h, "Bearer ") {
		if t := strings.TrimSpace(strings.TrimPrefix(h, "Bearer ")); t != "" {
			name = t
		}
	}
	return &authenticator.Response{User: &user.DefaultInfo{
		Name:   name,
		Groups: []string{user.SystemPrivilegedGroup, user.AllAuthenticated},
	}}, true, nil
})

// ---- main ----

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, strings.Split(v, ",")...); return nil }

func main() {
	var (
		etcdServers  = flag.String("etcd-servers", "http://127.0.0.1:2379", "comma-separated etcd client URLs")
		bindAddress  = flag.String("bind-address", "127.0.0.1", "address to listen on")
		port         = flag.Int("secure-port", 0, "port to listen on; 0 picks a free one (printed on stdout)")
		dataDir      = flag.String("data-dir", "", "directory for the serving certificate and the audit policy (required)")
		kubeconfig   = flag.String("kubeconfig-out", "", "write an admin kubeconfig here (default <data-dir>/kubeconfig)")
		auditLog     = flag.String("audit-log-path", "", "write the JSON audit log here (default <data-dir>/audit.log; '-' for stdout)")
		etcdPrefix   = flag.String("etcd-prefix", "/registry", "etcd key prefix")
		namespaces   = listFlag{}
		extraSANs    = listFlag{}
		verbosityStr = flag.String("v", "0", "klog verbosity")
		parentPID    = flag.Int("parent-pid", 0, "exit when this process is gone (so a killed test run leaves no server behind)")
	)
	flag.Var(&extraSANs, "extra-san", "extra IP or DNS name for the serving certificate (repeatable, comma-separated)")
	flag.Var(&namespaces, "namespace", "extra namespace to create at start (repeatable); default and kube-system always exist")
	flag.Parse()
	klogFlags := flag.NewFlagSet("klog", flag.ExitOnError)
	klog.InitFlags(klogFlags)
	_ = klogFlags.Set("v", *verbosityStr)
	if *parentPID > 0 {
		go func() {
			for range time.Tick(time.Second) {
				if os.Getppid() != *parentPID {
					fmt.Fprintln(os.Stderr, "apiserver: parent process gone, exiting")
					os.Exit(0)
				}
			}
		}()
	}
	if *dataDir == "" {
		fmt.Fprintln(os.Stderr, "--data-dir is required")
		os.Exit(2)
	}
	if *kubeconfig == "" {
		*kubeconfig = filepath.Join(*dataDir, "kubeconfig")
	}
	if *auditLog == "" {
		*auditLog = filepath.Join(*dataDir, "audit.log")
	}
	if err := run(*etcdServers, *bindAddress, *port, *dataDir, *kubeconfig, *auditLog, *etcdPrefix, extraSANs, namespaces); err != nil {
		fmt.Fprintln(os.Stderr, "apiserver:", err)
		os.Exit(1)
	}
}

func run(etcdServers, bindAddress string, port int, dataDir, kubeconfigPath, auditLog, etcdPrefix string, extraSANs, namespaces []string) error {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return err
	}
	rs := resources()
	registerTypes(rs)

	// Listen first so port 0 resolves to a real port before the certificate and kubeconfig are made.
	ln, err := net.Listen("tcp", net.JoinHostPort(bindAddress, strconv.Itoa(port)))
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	port = ln.Addr().(*net.TCPAddr).Port

	var storageVersions []schema.GroupVersion
	seen := map[schema.GroupVersion]bool{}
	for _, r := range rs {
		if !seen[r.gv] {
			seen[r.gv] = true
			storageVersions = append(storageVersions, r.gv)
		}
	}
	opts := genericoptions.NewRecommendedOptions(etcdPrefix, codecs.LegacyCodec(storageVersions...))
	opts.Etcd.StorageConfig.Transport.ServerList = strings.Split(etcdServers, ",")
	opts.Etcd.EnableWatchCache = true
	opts.SecureServing.Listener = ln
	opts.SecureServing.BindPort = port
	opts.SecureServing.BindAddress = net.ParseIP(bindAddress)
	opts.SecureServing.ServerCert.CertDirectory = filepath.Join(dataDir, "certs")
	opts.SecureServing.ServerCert.PairName = "apiserver"
	ips := []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")}
	dns := []string{"localhost"}
	for _, s := range extraSANs {
		if ip := net.ParseIP(s); ip != nil {
			ips = append(ips, ip)
		} else if s != "" {
			dns = append(dns, s)
		}
	}
	if err := opts.SecureServing.MaybeDefaultWithSelfSignedCerts("127.0.0.1", dns, ips); err != nil {
		return fmt.Errorf("self-signed certificate: %w", err)
	}
	policyPath := filepath.Join(dataDir, "audit-policy.yaml")
	policy := "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n"
	if err := os.WriteFile(policyPath, []byte(policy), 0o600); err != nil {
		return err
	}
	opts.Audit.PolicyFile = policyPath
	opts.Audit.LogOptions.Path = auditLog
	opts.Audit.LogOptions.Format = "json"
	opts.Audit.LogOptions.BatchOptions.Mode = "blocking"
	opts.Features.EnablePriorityAndFairness = false

	cfg := genericapiserver.NewRecommendedConfig(codecs)
	cfg.EffectiveVersion = compatibility.DefaultBuildEffectiveVersion()
	if err := opts.Etcd.ApplyTo(&cfg.Config); err != nil {
		return fmt.Errorf("etcd options: %w", err)
	}
	if err := opts.SecureServing.ApplyToConfig(&cfg.Config); err != nil {
		return fmt.Errorf("serving options: %w", err)
	}
	cfg.Authentication.Authenticator = tokenAsUser
	cfg.Authorization.Authorizer = authorizerfactory.NewAlwaysAllowAuthorizer()
	genericapiserver.AuthorizeClientBearerToken(cfg.LoopbackClientConfig, &cfg.Authentication, &cfg.Authorization)
	if err := opts.Audit.ApplyTo(&cfg.Config); err != nil {
		return fmt.Errorf("audit options: %w", err)
	}
	client, err := kubernetes.NewForConfig(cfg.LoopbackClientConfig)
	if err != nil {
		return err
	}
	cfg.ClientConfig = cfg.LoopbackClientConfig
	cfg.SharedInformerFactory = informers.NewSharedInformerFactory(client, 10*time.Minute)
	if err := opts.Features.ApplyTo(&cfg.Config, client, cfg.SharedInformerFactory); err != nil {
		return fmt.Errorf("feature options: %w", err)
	}
	namer := openapinamer.NewDefinitionNamer(scheme, extensionsapiserver.Scheme)
	cfg.OpenAPIConfig = genericapiserver.DefaultOpenAPIConfig(openAPIDefinitions, namer)
	cfg.OpenAPIConfig.Info.Title = "egressgw test API server"
	cfg.OpenAPIV3Config = genericapiserver.DefaultOpenAPIV3Config(openAPIDefinitions, namer)
	cfg.OpenAPIV3Config.Info.Title = "egressgw test API server"

	// One aggregated-discovery manager for both servers, so /apis lists built-in and CRD groups.
	cfg.AggregatedDiscoveryGroupManager = discoveryendpoint.NewResourceManager("apis")

	// The apiextensions server sits behind ours as its delegate. It shares our serving info,
	// loopback client (same TLS and token) and aggregated discovery manager; it only differs in
	// codec-dependent storage and in not installing a second OpenAPI endpoint.
	extGeneric := cfg.Config // shallow copy, as kube-apiserver does
	extGeneric.PostStartHooks = map[string]genericapiserver.PostStartHookConfigEntry{}
	extEtcd := *opts.Etcd
	extEtcd.StorageConfig.Codec = extensionsapiserver.Codecs.LegacyCodec(apiextensionsv1beta1.SchemeGroupVersion, apiextensionsv1.SchemeGroupVersion)
	extEtcd.StorageConfig.EncodeVersioner = runtime.NewMultiGroupVersioner(apiextensionsv1beta1.SchemeGroupVersion, schema.GroupKind{Group: apiextensionsv1beta1.GroupName})
	extEtcd.SkipHealthEndpoints = true
	extGeneric.RESTOptionsGetter = nil
	if err := extEtcd.ApplyTo(&extGeneric); err != nil {
		return fmt.Errorf("apiextensions etcd options: %w", err)
	}
	extGeneric.Serializer = extensionsapiserver.Codecs
	extGeneric.MergedResourceConfig = extensionsapiserver.DefaultAPIResourceConfigSource()
	extGeneric.SkipOpenAPIInstallation = true
	extNamer := openapinamer.NewDefinitionNamer(extensionsapiserver.Scheme)
	extGeneric.OpenAPIConfig = genericapiserver.DefaultOpenAPIConfig(extensionsopenapi.GetOpenAPIDefinitions, extNamer)
	extGeneric.OpenAPIV3Config = genericapiserver.DefaultOpenAPIV3Config(extensionsopenapi.GetOpenAPIDefinitions, extNamer)
	extCfg := &extensionsapiserver.Config{
		GenericConfig: &genericapiserver.RecommendedConfig{Config: extGeneric, SharedInformerFactory: cfg.SharedInformerFactory},
		ExtraConfig: extensionsapiserver.ExtraConfig{
			CRDRESTOptionsGetter: crdRESTOptionsGetter(*opts.Etcd, &extGeneric),
			MasterCount:          1,
		},
	}
	extServer, err := extCfg.Complete().New(genericapiserver.NewEmptyDelegate())
	if err != nil {
		return fmt.Errorf("apiextensions server: %w", err)
	}

	server, err := cfg.Complete().New("egressgw-test-apiserver", extServer.GenericAPIServer)
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	if err := installBuiltins(server, rs, cfg.RESTOptionsGetter); err != nil {
		return err
	}
	mirrorCRDGroups(server, extServer)

	if err := writeKubeconfig(kubeconfigPath, fmt.Sprintf("https://%s", net.JoinHostPort(hostFor(bindAddress), strconv.Itoa(port))), opts.SecureServing.ServerCert.CertKey.CertFile); err != nil {
		return err
	}
	server.AddPostStartHookOrDie("egressgw-namespaces", func(ctx genericapiserver.PostStartHookContext) error {
		want := append([]string{metav1.NamespaceDefault, metav1.NamespaceSystem, metav1.NamespacePublic, corev1.NamespaceNodeLease}, namespaces...)
		for _, ns := range want {
			for {
				_, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
				if err == nil || apierrors.IsAlreadyExists(err) {
					break
				}
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(100 * time.Millisecond):
				}
			}
		}
		return nil
	})

	// The harness reads this line to learn the port.
	fmt.Printf("serving on https://%s kubeconfig=%s\n", net.JoinHostPort(hostFor(bindAddress), strconv.Itoa(port)), kubeconfigPath)
	ctx := genericapiserver.SetupSignalContext()
	return server.PrepareRun().RunWithContext(ctx)
}

func hostFor(bind string) string {
	ip := net.ParseIP(bind)
	if ip == nil || ip.IsUnspecified() {
		return "127.0.0.1"
	}
	return ip.String()
}

func installBuiltins(server *genericapiserver.GenericAPIServer, rs []resource, opts generic.RESTOptionsGetter) error {
	groups := map[string]*genericapiserver.APIGroupInfo{}
	var order []string
	for _, r := range rs {
		info, ok := groups[r.gv.Group]
		if !ok {
			i := genericapiserver.NewDefaultAPIGroupInfo(r.gv.Group, scheme, metav1.ParameterCodec, codecs)
			info = &i
			groups[r.gv.Group] = info
			order = append(order, r.gv.Group)
		}
		st, err := newStorage(r, opts)
		if err != nil {
			return fmt.Errorf("storage for %s: %w", r.plural, err)
		}
		m := info.VersionedResourcesStorageMap[r.gv.Version]
		if m == nil {
			m = map[string]rest.Storage{}
			info.VersionedResourcesStorageMap[r.gv.Version] = m
		}
		for k, v := range st {
			m[k] = v
		}
	}
	for _, g := range order {
		info := groups[g]
		if g == "" {
			if err := server.InstallLegacyAPIGroup(genericapiserver.DefaultLegacyAPIPrefix, info); err != nil {
				return fmt.Errorf("install core group: %w", err)
			}
			continue
		}
		if err := server.InstallAPIGroup(info); err != nil {
			return fmt.Errorf("install group %s: %w", g, err)
		}
	}
	return nil
}

func crdRESTOptionsGetter(etcd genericoptions.EtcdOptions, c *genericapiserver.Config) generic.RESTOptionsGetter {
	return extensionsoptions.NewCRDRESTOptionsGetter(etcd, c.ResourceTransformers, c.StorageObjectCountTracker)
}

func writeKubeconfig(path, server, caFile string) error {
	pemBytes, err := os.ReadFile(caFile)
	if err != nil {
		return err
	}
	// The generated file holds the serving cert followed by its self-signed CA; trusting all of it
	// is what clients need.
	if b, _ := pem.Decode(pemBytes); b == nil {
		return fmt.Errorf("no certificate in %s", caFile)
	} else if _, err := x509.ParseCertificate(b.Bytes); err != nil {
		return err
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["egressgw-test"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: pemBytes}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{Token: "admin"}
	cfg.Contexts["egressgw-test"] = &clientcmdapi.Context{Cluster: "egressgw-test", AuthInfo: "admin", Namespace: "default"}
	cfg.CurrentContext = "egressgw-test"
	return clientcmd.WriteToFile(*cfg, path)
}
