// egressgw_packet: a minimal AF_PACKET raw-frame socket for Node.js (N-API, plain C).
//
// Why an addon: Node has no raw link-layer sockets and no maintained npm package offers them, yet the
// agent must send gratuitous ARP / unsolicited NA and answer ARP/NS itself (design §6). Frames are built
// and parsed in TypeScript; this file only moves bytes.
//
// JS surface (wrapped by src/agent/net/packet.ts):
//   new RawSocket(ifindex, protocol, onFrame[, filter])
//                                               protocol is an ethertype (0x0806 ARP, 0x86dd IPv6,
//                                               3 = ETH_P_ALL); onFrame(frame: Buffer) per received frame;
//                                               filter "ndp" attaches a classic BPF program that keeps only
//                                               ICMPv6 Neighbor Solicitations/Advertisements
//   .send(frame: Buffer) -> bytes sent          the frame is a full Ethernet frame (dst, src, type, ...)
//   .addMulticast(mac: Buffer) / .dropMulticast(mac: Buffer)   PACKET_MR_MULTICAST membership
//   .ref() / .unref()                           whether an open socket keeps the event loop alive
//   .close()                                    idempotent
//   ifNameToIndex(name) -> ifindex              if_nametoindex(3) in the current network namespace
//   addressSet(op, ifindex, family, addr, prefixLen, validLft, preferredLft, nodad)
//                                               rtnetlink RTM_NEWADDR (create or replace, op "replace") or
//                                               RTM_DELADDR (op "delete") on the calling process's
//                                               network namespace; addr: Buffer of 4 or 16 bytes;
//                                               lifetimes in seconds, 0xffffffff = forever. The same
//                                               message `ip addr replace/del` sends, without a process:
//                                               the agent refreshes VIP lifetimes several times a second
//                                               and adds a VIP on the takeover path, where a fork under
//                                               load costs tens of milliseconds.
// Errors are thrown as JS Error objects whose `code` is the errno name (EPERM, ENODEV, ...).

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <net/if.h>
#include <linux/if_packet.h>
#include <linux/if_addr.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <node_api.h>

#define MAX_FRAME 65536
// Frames drained per readiness wake-up, so a flood cannot starve the event loop.
#define MAX_BATCH 64

typedef struct {
  napi_env env;
  int fd;
  int ifindex;
  int protocol;
  uv_poll_t poll;
  int poll_started;   // uv_poll_init succeeded, so the handle must go through uv_close
  int closing;        // close() called (or finalizer ran first)
  int poll_closed;    // uv_close callback ran (or poll never started)
  int finalized;      // JS wrapper collected
  napi_ref on_frame;  // strong while open
  napi_ref self;      // strong while open: an open socket must not be collected under its callbacks
  napi_async_context async_ctx;
} packet_sock;

static const char *errno_code(int err) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
  const char *name = strerrorname_np(err);
  if (name != NULL) return name;
#else
  // Other libcs (musl) have no strerrorname_np: name the errors this addon can actually hit.
  switch (err) {
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    case ENODEV: return "ENODEV";
    case ENXIO: return "ENXIO";
    case ENETDOWN: return "ENETDOWN";
    case EMSGSIZE: return "EMSGSIZE";
    case ENOBUFS: return "ENOBUFS";
    case EAGAIN: return "EAGAIN";
    case EINVAL: return "EINVAL";
    case ENOMEM: return "ENOMEM";
    case EBADF: return "EBADF";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
  }
#endif
  return "EUNKNOWN";
}

// Throws Error(`${what}: ${strerror}`) with .code = errno name and .errno = number.
static void throw_errno(napi_env env, const char *what, int err) {
  char msg[256];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_value code, message, error, errnum;
  napi_create_string_utf8(env, errno_code(err), NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &message);
  napi_create_error(env, code, message, &error);
  napi_create_int32(env, err, &errnum);
  napi_set_named_property(env, error, "errno", errnum);
  napi_throw(env, error);
}

#define NAPI_CALL(env, call)                                        \
  do {                                                              \
    if ((call) != napi_ok) {                                        \
      bool pending = false;                                         \
      napi_is_exception_pending((env), &pending);                   \
      if (!pending) napi_throw_error((env), "EINTERNAL", #call " failed"); \
      return NULL;                                                  \
    }                                                               \
  } while (0)

static void maybe_free(packet_sock *s) {
  if (s->finalized && s->poll_closed) free(s);
}

static void on_poll_closed(uv_handle_t *handle) {
  packet_sock *s = (packet_sock *)handle->data;
  s->poll_closed = 1;
  maybe_free(s);
}

// Stops polling and closes the fd. Safe to call more than once. JS references are released by the
// caller when it runs on the JS thread with a valid env (not from the finalizer).
static void close_socket(packet_sock *s) {
  if (s->closing) return;
  s->closing = 1;
  if (s->poll_started) {
    uv_poll_stop(&s->poll);
    uv_close((uv_handle_t *)&s->poll, on_poll_closed);
  } else {
    s->poll_closed = 1;
  }
  // The poll is stopped, so closing the fd now is safe (libuv only watches it while active).
  if (s->fd >= 0) {
    close(s->fd);
    s->fd = -1;
  }
}

static void release_refs(packet_sock *s) {
  if (s->on_frame != NULL) {
    napi_delete_reference(s->env, s->on_frame);
    s->on_frame = NULL;
  }
  if (s->self != NULL) {
    napi_delete_reference(s->env, s->self);
    s->self = NULL;
  }
  if (s->async_ctx != NULL) {
    napi_async_destroy(s->env, s->async_ctx);
    s->async_ctx = NULL;
  }
}

static void deliver(packet_sock *s, const unsigned char *buf, size_t len) {
  napi_env env = s->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value cb, recv, frame, result;
  void *data = NULL;
  if (napi_get_reference_value(env, s->on_frame, &cb) == napi_ok && cb != NULL &&
      napi_get_reference_value(env, s->self, &recv) == napi_ok && recv != NULL &&
      napi_create_buffer_copy(env, len, buf, &data, &frame) == napi_ok) {
    // napi_make_callback (not napi_call_function) so that microtasks and async hooks run as for any
    // other I/O callback.
    napi_status st = napi_make_callback(env, s->async_ctx, recv, cb, 1, &frame, &result);
    if (st == napi_pending_exception) {
      napi_value err;
      napi_get_and_clear_last_exception(env, &err);
      napi_fatal_exception(env, err);  // surfaces as 'uncaughtException', like any throwing listener
    }
  }
  napi_close_handle_scope(env, scope);
}

static void on_readable(uv_poll_t *handle, int status, int events) {
  packet_sock *s = (packet_sock *)handle->data;
  if (status < 0 || !(events & UV_READABLE)) return;
  static unsigned char buf[MAX_FRAME];
  for (int i = 0; i < MAX_BATCH && !s->closing; i++) {
    struct sockaddr_ll from;
    socklen_t fromlen = sizeof from;
    ssize_t n = recvfrom(s->fd, buf, sizeof buf, MSG_TRUNC, (struct sockaddr *)&from, &fromlen);
    if (n < 0) break;  // EAGAIN: drained. Other errors: nothing useful to do per frame.
    // ETH_P_ALL sockets also get a PACKET_OUTGOING copy of every transmitted frame; a responder must
    // never see (and answer) its own frames.
    if (from.sll_pkttype == PACKET_OUTGOING) continue;
    if ((size_t)n > sizeof buf) n = sizeof buf;  // truncated jumbo frame: deliver what we have
    deliver(s, buf, (size_t)n);
  }
}

// Keeps only IPv6 frames whose next header is ICMPv6 (58) with type NS (135) or NA (136). Without it an
// ETH_P_IPV6 socket on a gateway would copy every forwarded IPv6 packet into the agent.
static struct sock_filter ndp_filter[] = {
    BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 12),                     // ethertype
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ETH_P_IPV6, 0, 6),  // jump offsets count from the next instruction
    BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 14 + 6),                 // IPv6 next header
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 58, 0, 4),
    BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 14 + 40),                // ICMPv6 type
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 135, 1, 0),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 136, 0, 1),
    BPF_STMT(BPF_RET | BPF_K, 0x40000),                         // accept (whole frame)
    BPF_STMT(BPF_RET | BPF_K, 0),                               // drop
};

static packet_sock *unwrap(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv) {
  napi_value self;
  packet_sock *s = NULL;
  if (napi_get_cb_info(env, info, argc, argv, &self, NULL) != napi_ok) return NULL;
  if (napi_unwrap(env, self, (void **)&s) != napi_ok || s == NULL) {
    napi_throw_error(env, "EINVAL", "not a RawSocket");
    return NULL;
  }
  return s;
}

static void finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  packet_sock *s = (packet_sock *)data;
  // Only reachable after close() (an open socket holds a strong reference to itself), or at env
  // teardown; either way no JS may run here.
  close_socket(s);
  s->finalized = 1;
  maybe_free(s);
}

static napi_value js_new(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4], self;
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, &self, NULL));
  int32_t ifindex = 0, protocol = 0;
  napi_valuetype cbtype = napi_undefined;
  if (argc < 3 || napi_get_value_int32(env, argv[0], &ifindex) != napi_ok ||
      napi_get_value_int32(env, argv[1], &protocol) != napi_ok ||
      napi_typeof(env, argv[2], &cbtype) != napi_ok || cbtype != napi_function) {
    napi_throw_type_error(env, "EINVAL", "RawSocket(ifindex: number, protocol: number, onFrame: function)");
    return NULL;
  }
  if (ifindex <= 0 || protocol < 0 || protocol > 0xffff) {
    napi_throw_range_error(env, "EINVAL", "ifindex must be > 0 and protocol a 16-bit ethertype");
    return NULL;
  }
  int want_ndp_filter = 0;
  napi_valuetype ftype = napi_undefined;
  if (argc >= 4 && napi_typeof(env, argv[3], &ftype) == napi_ok && ftype != napi_undefined) {
    char fname[16];
    size_t flen = 0;
    if (ftype != napi_string || napi_get_value_string_utf8(env, argv[3], fname, sizeof fname, &flen) != napi_ok ||
        strcmp(fname, "ndp") != 0) {
      napi_throw_type_error(env, "EINVAL", "filter must be \"ndp\" or undefined");
      return NULL;
    }
    want_ndp_filter = 1;
  }

  // Protocol 0 at socket() time receives nothing; frames start flowing only after bind() names the
  // interface and ethertype, so no frame from another interface can slip in between.
  int fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    throw_errno(env, "socket(AF_PACKET, SOCK_RAW) (needs CAP_NET_RAW)", errno);
    return NULL;
  }
  if (want_ndp_filter) {
    struct sock_fprog prog = {.len = sizeof ndp_filter / sizeof ndp_filter[0], .filter = ndp_filter};
    if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) < 0) {
      int err = errno;
      close(fd);
      throw_errno(env, "SO_ATTACH_FILTER", err);
      return NULL;
    }
  }
  struct sockaddr_ll addr;
  memset(&addr, 0, sizeof addr);
  addr.sll_family = AF_PACKET;
  addr.sll_protocol = htons((uint16_t)protocol);
  addr.sll_ifindex = ifindex;
  if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
    int err = errno;
    close(fd);
    char what[64];
    snprintf(what, sizeof what, "bind(AF_PACKET, ifindex %d)", ifindex);
    throw_errno(env, what, err);
    return NULL;
  }

  packet_sock *s = calloc(1, sizeof *s);
  if (s == NULL) {
    close(fd);
    throw_errno(env, "calloc", ENOMEM);
    return NULL;
  }
  s->env = env;
  s->fd = fd;
  s->ifindex = ifindex;
  s->protocol = protocol;
  s->poll.data = s;

  uv_loop_t *loop = NULL;
  int rc;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == NULL) {
    close(fd);
    free(s);
    napi_throw_error(env, "EINTERNAL", "napi_get_uv_event_loop failed");
    return NULL;
  }
  if ((rc = uv_poll_init_socket(loop, &s->poll, fd)) != 0) {
    close(fd);
    free(s);
    throw_errno(env, "uv_poll_init", -rc);
    return NULL;
  }
  s->poll_started = 1;

  if (napi_wrap(env, self, s, finalize, NULL, NULL) != napi_ok) {
    close_socket(s);  // the poll handle frees s in its close callback once finalized is set
    s->finalized = 1;
    maybe_free(s);
    napi_throw_error(env, "EINTERNAL", "napi_wrap failed");
    return NULL;
  }
  napi_value resource_name;
  napi_create_string_utf8(env, "egressgw:RawSocket", NAPI_AUTO_LENGTH, &resource_name);
  if (napi_create_reference(env, argv[2], 1, &s->on_frame) != napi_ok ||
      napi_create_reference(env, self, 1, &s->self) != napi_ok ||
      napi_async_init(env, self, resource_name, &s->async_ctx) != napi_ok) {
    close_socket(s);
    release_refs(s);
    napi_throw_error(env, "EINTERNAL", "failed to set up callbacks");
    return NULL;
  }
  if ((rc = uv_poll_start(&s->poll, UV_READABLE, on_readable)) != 0) {
    close_socket(s);
    release_refs(s);
    throw_errno(env, "uv_poll_start", -rc);
    return NULL;
  }
  return self;
}

static napi_value js_send(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  packet_sock *s = unwrap(env, info, &argc, argv);
  if (s == NULL) return NULL;
  if (s->closing) {
    napi_throw_error(env, "EBADF", "send on a closed RawSocket");
    return NULL;
  }
  bool is_buffer = false;
  void *data = NULL;
  size_t len = 0;
  if (argc < 1 || napi_is_buffer(env, argv[0], &is_buffer) != napi_ok || !is_buffer ||
      napi_get_buffer_info(env, argv[0], &data, &len) != napi_ok) {
    napi_throw_type_error(env, "EINVAL", "send(frame: Buffer)");
    return NULL;
  }
  if (len < ETH_HLEN) {
    napi_throw_range_error(env, "EINVAL", "frame shorter than an Ethernet header (14 bytes)");
    return NULL;
  }
  // Bound SOCK_RAW socket: send() uses the bound interface and the frame carries its own header.
  ssize_t n = send(s->fd, data, len, 0);
  if (n < 0) {
    throw_errno(env, "send(AF_PACKET)", errno);
    return NULL;
  }
  napi_value result;
  NAPI_CALL(env, napi_create_int64(env, (int64_t)n, &result));
  return result;
}

static napi_value membership(napi_env env, napi_callback_info info, int optname) {
  size_t argc = 1;
  napi_value argv[1];
  packet_sock *s = unwrap(env, info, &argc, argv);
  if (s == NULL) return NULL;
  if (s->closing) {
    napi_throw_error(env, "EBADF", "RawSocket is closed");
    return NULL;
  }
  bool is_buffer = false;
  void *data = NULL;
  size_t len = 0;
  if (argc < 1 || napi_is_buffer(env, argv[0], &is_buffer) != napi_ok || !is_buffer ||
      napi_get_buffer_info(env, argv[0], &data, &len) != napi_ok || len != ETH_ALEN) {
    napi_throw_type_error(env, "EINVAL", "expected a 6-byte MAC address Buffer");
    return NULL;
  }
  struct packet_mreq mreq;
  memset(&mreq, 0, sizeof mreq);
  mreq.mr_ifindex = s->ifindex;
  mreq.mr_type = PACKET_MR_MULTICAST;
  mreq.mr_alen = ETH_ALEN;
  memcpy(mreq.mr_address, data, ETH_ALEN);
  if (setsockopt(s->fd, SOL_PACKET, optname, &mreq, sizeof mreq) < 0) {
    throw_errno(env, optname == PACKET_ADD_MEMBERSHIP ? "PACKET_ADD_MEMBERSHIP" : "PACKET_DROP_MEMBERSHIP", errno);
    return NULL;
  }
  napi_value undef;
  napi_get_undefined(env, &undef);
  return undef;
}

static napi_value js_add_multicast(napi_env env, napi_callback_info info) {
  return membership(env, info, PACKET_ADD_MEMBERSHIP);
}

static napi_value js_drop_multicast(napi_env env, napi_callback_info info) {
  return membership(env, info, PACKET_DROP_MEMBERSHIP);
}

static napi_value set_ref(napi_env env, napi_callback_info info, int on) {
  size_t argc = 0;
  packet_sock *s = unwrap(env, info, &argc, NULL);
  if (s == NULL) return NULL;
  if (!s->closing && s->poll_started) {
    if (on) uv_ref((uv_handle_t *)&s->poll);
    else uv_unref((uv_handle_t *)&s->poll);
  }
  napi_value undef;
  napi_get_undefined(env, &undef);
  return undef;
}

static napi_value js_ref(napi_env env, napi_callback_info info) { return set_ref(env, info, 1); }
static napi_value js_unref(napi_env env, napi_callback_info info) { return set_ref(env, info, 0); }

static napi_value js_close(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  packet_sock *s = unwrap(env, info, &argc, NULL);
  if (s == NULL) return NULL;
  close_socket(s);
  release_refs(s);
  napi_value undef;
  napi_get_undefined(env, &undef);
  return undef;
}

// One RTM_NEWADDR / RTM_DELADDR request with an acknowledgement; returns 0 or a positive errno.
static int rtnl_address(int type, int ifindex, int family, const unsigned char *addr, size_t alen, int prefix_len,
                        uint32_t valid, uint32_t preferred, int nodad) {
  struct {
    struct nlmsghdr n;
    struct ifaddrmsg ifa;
    char attrs[128];
  } req;
  memset(&req, 0, sizeof req);
  req.n.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifaddrmsg));
  req.n.nlmsg_type = (unsigned short)type;
  req.n.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | (type == RTM_NEWADDR ? NLM_F_CREATE | NLM_F_REPLACE : 0);
  req.n.nlmsg_seq = 1;
  req.ifa.ifa_family = (unsigned char)family;
  req.ifa.ifa_prefixlen = (unsigned char)prefix_len;
  req.ifa.ifa_index = (unsigned)ifindex;
  req.ifa.ifa_scope = RT_SCOPE_UNIVERSE;
  if (nodad) req.ifa.ifa_flags |= IFA_F_NODAD;
#define ADD_ATTR(kind, data, size)                                                      \
  do {                                                                                  \
    struct rtattr *rta = (struct rtattr *)((char *)&req + NLMSG_ALIGN(req.n.nlmsg_len)); \
    rta->rta_type = (kind);                                                             \
    rta->rta_len = (unsigned short)RTA_LENGTH(size);                                    \
    memcpy(RTA_DATA(rta), (data), (size));                                              \
    req.n.nlmsg_len = NLMSG_ALIGN(req.n.nlmsg_len) + RTA_ALIGN(rta->rta_len);           \
  } while (0)
  ADD_ATTR(IFA_LOCAL, addr, alen);
  ADD_ATTR(IFA_ADDRESS, addr, alen);
  if (type == RTM_NEWADDR && valid != 0xffffffffu) {
    struct ifa_cacheinfo ci;
    memset(&ci, 0, sizeof ci);
    ci.ifa_valid = valid;
    ci.ifa_prefered = preferred;
    ADD_ATTR(IFA_CACHEINFO, &ci, sizeof ci);
  }
#undef ADD_ATTR
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0) return errno;
  struct sockaddr_nl kernel;
  memset(&kernel, 0, sizeof kernel);
  kernel.nl_family = AF_NETLINK;
  int err = 0;
  if (sendto(fd, &req, req.n.nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0) {
    err = errno;
  } else {
    // The acknowledgement: an NLMSG_ERROR whose error is 0 on success, -errno otherwise.
    char buf[1024];
    ssize_t n;
    do {
      n = recv(fd, buf, sizeof buf, 0);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
      err = errno;
    } else {
      struct nlmsghdr *h = (struct nlmsghdr *)buf;
      if (!NLMSG_OK(h, (unsigned)n) || h->nlmsg_type != NLMSG_ERROR) err = EPROTO;
      else err = -((struct nlmsgerr *)NLMSG_DATA(h))->error;
    }
  }
  close(fd);
  return err;
}

// addressSet(op: "replace" | "delete", ifindex, family: 4 | 6, addr: Buffer, prefixLen, validLft, preferredLft, nodad)
static napi_value js_address_set(napi_env env, napi_callback_info info) {
  size_t argc = 8;
  napi_value argv[8];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char op[16];
  size_t oplen = 0;
  int32_t ifindex = 0, family = 0, prefix_len = 0;
  uint32_t valid = 0, preferred = 0;
  bool nodad = false;
  void *addr = NULL;
  size_t alen = 0;
  bool is_buffer = false;
  if (argc < 8 || napi_get_value_string_utf8(env, argv[0], op, sizeof op, &oplen) != napi_ok ||
      napi_get_value_int32(env, argv[1], &ifindex) != napi_ok || napi_get_value_int32(env, argv[2], &family) != napi_ok ||
      napi_is_buffer(env, argv[3], &is_buffer) != napi_ok || !is_buffer ||
      napi_get_buffer_info(env, argv[3], &addr, &alen) != napi_ok || napi_get_value_int32(env, argv[4], &prefix_len) != napi_ok ||
      napi_get_value_uint32(env, argv[5], &valid) != napi_ok || napi_get_value_uint32(env, argv[6], &preferred) != napi_ok ||
      napi_get_value_bool(env, argv[7], &nodad) != napi_ok) {
    napi_throw_type_error(env, "EINVAL", "addressSet(op, ifindex, family, addr: Buffer, prefixLen, validLft, preferredLft, nodad)");
    return NULL;
  }
  int replace = strcmp(op, "replace") == 0;
  if ((!replace && strcmp(op, "delete") != 0) || ifindex <= 0 || (family != 4 && family != 6) ||
      alen != (family == 4 ? 4u : 16u) || prefix_len < 0 || prefix_len > (family == 4 ? 32 : 128)) {
    napi_throw_range_error(env, "EINVAL", "addressSet: op must be replace or delete, family 4 or 6 with a 4- or 16-byte address");
    return NULL;
  }
  int err = rtnl_address(replace ? RTM_NEWADDR : RTM_DELADDR, ifindex, family == 4 ? AF_INET : AF_INET6, addr, alen,
                         prefix_len, valid, preferred, nodad);
  if (err != 0) {
    throw_errno(env, replace ? "RTM_NEWADDR" : "RTM_DELADDR", err);
    return NULL;
  }
  napi_value undef;
  napi_get_undefined(env, &undef);
  return undef;
}

// ifNameToIndex(name) -> ifindex in the calling process's network namespace.
static napi_value js_if_name_to_index(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char name[IF_NAMESIZE + 1];
  size_t len = 0;
  if (argc < 1 || napi_get_value_string_utf8(env, argv[0], name, sizeof name, &len) != napi_ok || len == 0 ||
      len >= IF_NAMESIZE) {
    napi_throw_type_error(env, "EINVAL", "ifNameToIndex(name: string): name must be 1-15 characters");
    return NULL;
  }
  unsigned idx = if_nametoindex(name);
  if (idx == 0) {
    char what[64];
    snprintf(what, sizeof what, "interface %s", name);
    throw_errno(env, what, errno);
    return NULL;
  }
  napi_value result;
  NAPI_CALL(env, napi_create_uint32(env, idx, &result));
  return result;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor methods[] = {
      {"send", NULL, js_send, NULL, NULL, NULL, napi_default, NULL},
      {"addMulticast", NULL, js_add_multicast, NULL, NULL, NULL, napi_default, NULL},
      {"dropMulticast", NULL, js_drop_multicast, NULL, NULL, NULL, napi_default, NULL},
      {"ref", NULL, js_ref, NULL, NULL, NULL, napi_default, NULL},
      {"unref", NULL, js_unref, NULL, NULL, NULL, napi_default, NULL},
      {"close", NULL, js_close, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_value cls;
  NAPI_CALL(env, napi_define_class(env, "RawSocket", NAPI_AUTO_LENGTH, js_new, NULL,
                                   sizeof methods / sizeof methods[0], methods, &cls));
  NAPI_CALL(env, napi_set_named_property(env, exports, "RawSocket", cls));
  napi_value fn;
  NAPI_CALL(env, napi_create_function(env, "ifNameToIndex", NAPI_AUTO_LENGTH, js_if_name_to_index, NULL, &fn));
  NAPI_CALL(env, napi_set_named_property(env, exports, "ifNameToIndex", fn));
  napi_value addr_fn;
  NAPI_CALL(env, napi_create_function(env, "addressSet", NAPI_AUTO_LENGTH, js_address_set, NULL, &addr_fn));
  NAPI_CALL(env, napi_set_named_property(env, exports, "addressSet", addr_fn));
  napi_value eth_p_all, eth_p_arp, eth_p_ipv6;
  NAPI_CALL(env, napi_create_int32(env, ETH_P_ALL, &eth_p_all));
  NAPI_CALL(env, napi_create_int32(env, ETH_P_ARP, &eth_p_arp));
  NAPI_CALL(env, napi_create_int32(env, ETH_P_IPV6, &eth_p_ipv6));
  NAPI_CALL(env, napi_set_named_property(env, exports, "ETH_P_ALL", eth_p_all));
  NAPI_CALL(env, napi_set_named_property(env, exports, "ETH_P_ARP", eth_p_arp));
  NAPI_CALL(env, napi_set_named_property(env, exports, "ETH_P_IPV6", eth_p_ipv6));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
