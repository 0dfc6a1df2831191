// egressgw_nft: libnftables in-process for Node.js (N-API, plain C).
//
// Why an addon: the agent refreshes its kernel dead-man's switch (nftables set elements with a timeout)
// several times a second; forking `nft` for each refresh would cost a process per refresh, and a
// long-lived `nft -i` gives no reliable end-of-command or error framing. libnftables runs the same
// parser and the same netlink transaction as `nft -f`, in this process, and reports errors as text.
//
// Why dlopen: libnftables is loaded when the first context is created, not when this addon is loaded.
// The addon therefore builds without libnftables' -dev package, a node without libnftables1 gets a
// clear error from `new NftContext()` (and only from there), and the AF_PACKET addon is unaffected.
// The few functions used are declared below with the ABI of libnftables.so.1 (stable since 0.9.x).
//
// JS surface (wrapped by src/agent/net/nft.ts):
//   new NftContext()                 throws (code ENOLIBNFT) when libnftables.so.1 cannot be loaded
//   .run(script: string, json: bool) -> { rc: number, output: string, error: string }
//                                    one call = one nft_run_cmd_from_buffer = one kernel transaction
//                                    for every command in `script` (all or nothing); `json` selects
//                                    JSON output (list commands)
//   .close()                         idempotent
// Calls are synchronous: a transaction on a small table takes well under a millisecond, and doing it
// on the caller's stack keeps "compute the timeout, commit it" one uninterrupted step (see fence.ts).

#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <node_api.h>

// From libnftables.h (nftables 0.9.x–1.1.x): an opaque context and these entry points.
struct nft_ctx;
#define NFT_CTX_DEFAULT 0
#define NFT_CTX_OUTPUT_JSON (1u << 4)

typedef struct {
  struct nft_ctx *(*ctx_new)(uint32_t flags);
  void (*ctx_free)(struct nft_ctx *ctx);
  int (*run_cmd_from_buffer)(struct nft_ctx *ctx, const char *buf);
  int (*buffer_output)(struct nft_ctx *ctx);
  const char *(*get_output_buffer)(struct nft_ctx *ctx);
  int (*buffer_error)(struct nft_ctx *ctx);
  const char *(*get_error_buffer)(struct nft_ctx *ctx);
  unsigned int (*output_get_flags)(struct nft_ctx *ctx);
  void (*output_set_flags)(struct nft_ctx *ctx, unsigned int flags);
} nft_api;

static nft_api api;
static void *lib;
static char lib_error[512];

// Loads libnftables once per process; returns false with lib_error set when it cannot.
static bool load_lib(void) {
  if (lib != NULL) return true;
  void *h = dlopen("libnftables.so.1", RTLD_NOW | RTLD_LOCAL);
  if (h == NULL) {
    const char *e = dlerror();
    snprintf(lib_error, sizeof lib_error, "cannot load libnftables.so.1 (install the libnftables1 package): %s", e ? e : "unknown error");
    return false;
  }
#define SYM(field, name)                                                                    \
  do {                                                                                      \
    *(void **)(&api.field) = dlsym(h, name);                                                \
    if (api.field == NULL) {                                                                \
      snprintf(lib_error, sizeof lib_error, "libnftables.so.1 has no symbol %s", name);     \
      dlclose(h);                                                                           \
      return false;                                                                         \
    }                                                                                       \
  } while (0)
  SYM(ctx_new, "nft_ctx_new");
  SYM(ctx_free, "nft_ctx_free");
  SYM(run_cmd_from_buffer, "nft_run_cmd_from_buffer");
  SYM(buffer_output, "nft_ctx_buffer_output");
  SYM(get_output_buffer, "nft_ctx_get_output_buffer");
  SYM(buffer_error, "nft_ctx_buffer_error");
  SYM(get_error_buffer, "nft_ctx_get_error_buffer");
  SYM(output_get_flags, "nft_ctx_output_get_flags");
  SYM(output_set_flags, "nft_ctx_output_set_flags");
#undef SYM
  lib = h;
  return true;
}

typedef struct {
  struct nft_ctx *ctx;
} nft_handle;

static void throw_code(napi_env env, const char *code, const char *msg) {
  napi_value c, m, error;
  napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &c);
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &m);
  napi_create_error(env, c, m, &error);
  napi_set_named_property(env, error, "code", c);
  napi_throw(env, error);
}

static void handle_free(nft_handle *h) {
  if (h->ctx != NULL) {
    api.ctx_free(h->ctx);
    h->ctx = NULL;
  }
}

static void finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  nft_handle *h = data;
  handle_free(h);
  free(h);
}

static nft_handle *unwrap(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv) {
  napi_value self;
  if (napi_get_cb_info(env, info, argc, argv, &self, NULL) != napi_ok) return NULL;
  nft_handle *h = NULL;
  if (napi_unwrap(env, self, (void **)&h) != napi_ok || h == NULL) {
    throw_code(env, "EINVAL", "not an NftContext");
    return NULL;
  }
  return h;
}

static napi_value ctx_construct(napi_env env, napi_callback_info info) {
  napi_value self;
  if (napi_get_cb_info(env, info, NULL, NULL, &self, NULL) != napi_ok) return NULL;
  if (!load_lib()) {
    throw_code(env, "ENOLIBNFT", lib_error);
    return NULL;
  }
  nft_handle *h = calloc(1, sizeof *h);
  if (h == NULL) {
    throw_code(env, "ENOMEM", "calloc failed");
    return NULL;
  }
  h->ctx = api.ctx_new(NFT_CTX_DEFAULT);
  if (h->ctx == NULL) {
    free(h);
    throw_code(env, "ENOMEM", "nft_ctx_new failed");
    return NULL;
  }
  // Output and errors go to buffers we return, never to this process's stdout/stderr.
  api.buffer_output(h->ctx);
  api.buffer_error(h->ctx);
  if (napi_wrap(env, self, h, finalize, NULL, NULL) != napi_ok) {
    handle_free(h);
    free(h);
    throw_code(env, "EINTERNAL", "napi_wrap failed");
    return NULL;
  }
  return self;
}

static napi_value set_string(napi_env env, napi_value obj, const char *name, const char *value) {
  napi_value v;
  napi_create_string_utf8(env, value ? value : "", NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, obj, name, v);
  return obj;
}

static napi_value ctx_run(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  nft_handle *h = unwrap(env, info, &argc, argv);
  if (h == NULL) return NULL;
  if (h->ctx == NULL) {
    throw_code(env, "EBADF", "run on a closed NftContext");
    return NULL;
  }
  napi_valuetype t;
  if (argc < 1 || napi_typeof(env, argv[0], &t) != napi_ok || t != napi_string) {
    throw_code(env, "EINVAL", "run(script: string, json?: boolean)");
    return NULL;
  }
  bool json = false;
  if (argc >= 2) napi_get_value_bool(env, argv[1], &json);
  size_t len = 0;
  napi_get_value_string_utf8(env, argv[0], NULL, 0, &len);
  char *script = malloc(len + 1);
  if (script == NULL) {
    throw_code(env, "ENOMEM", "malloc failed");
    return NULL;
  }
  napi_get_value_string_utf8(env, argv[0], script, len + 1, &len);
  unsigned int flags = api.output_get_flags(h->ctx);
  api.output_set_flags(h->ctx, json ? (flags | NFT_CTX_OUTPUT_JSON) : (flags & ~NFT_CTX_OUTPUT_JSON));
  int rc = api.run_cmd_from_buffer(h->ctx, script);
  free(script);
  // The buffers belong to the context and are overwritten by the next run: copy them out now.
  napi_value result, rcv;
  napi_create_object(env, &result);
  napi_create_int32(env, rc, &rcv);
  napi_set_named_property(env, result, "rc", rcv);
  set_string(env, result, "output", api.get_output_buffer(h->ctx));
  set_string(env, result, "error", api.get_error_buffer(h->ctx));
  return result;
}

static napi_value ctx_close(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  nft_handle *h = unwrap(env, info, &argc, NULL);
  if (h == NULL) return NULL;
  handle_free(h);
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor methods[] = {
      {"run", NULL, ctx_run, NULL, NULL, NULL, napi_default, NULL},
      {"close", NULL, ctx_close, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_value cls;
  if (napi_define_class(env, "NftContext", NAPI_AUTO_LENGTH, ctx_construct, NULL, 2, methods, &cls) != napi_ok) return NULL;
  napi_set_named_property(env, exports, "NftContext", cls);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
