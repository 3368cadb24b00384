/*
 * seccompInstall(rules): a seccomp allow-list for the whole process (libseccomp).
 *
 * The node calls this once, at the end of its start-up, when its TAPs, sockets and
 * control socket are open. The list itself (which system calls, and why) is policy
 * and lives in TypeScript (src/node/sandbox.ts); this file only turns it into a BPF
 * program and loads it.
 *
 *   rules: [{ name: "read" }, { name: "clone", args: [{ index: 0, mask, value }] },
 *           { name: "clone3", errno: 38 }, ...]
 *
 * A rule without `errno` allows the call; with `errno` the call fails with that
 * errno instead of the default. `args` are ANDed masked comparisons
 * ((arg & mask) == value); several rules for one name are ORed. Every call no rule
 * matches fails with EPERM (SCMP_ACT_ERRNO): see src/node/sandbox.ts for why EPERM
 * and not a kill. A call of a foreign ABI (i386 or x32 numbers) kills the process.
 *
 * SCMP_FLTATR_CTL_TSYNC loads the filter into every thread of the process at once
 * (seccomp(2) SECCOMP_FILTER_FLAG_TSYNC): Node.js runs V8 and libuv threads before
 * any of our code, and a filter on the calling thread alone would leave them free.
 * The kernel also copies no_new_privs to every thread it synchronises.
 *
 * A name libseccomp does not know at all is an error (a typo must not silently
 * shrink the list); a name it knows but this architecture lacks (open on arm64)
 * is skipped and reported.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <seccomp.h>

#include <node_api.h>

#include "common.h"

#define MAX_ARGS 6
#define MAX_NAME 64
#define MAX_SYSCALLS 1024

static void throw_plain(napi_env env, const char *code, const char *msg) {
  throw_err(env, ERR_PLAIN, code, msg, 0, NULL);
}

/* A non-negative integer property up to 2^53 as uint64; false with an exception pending. */
static bool get_u64(napi_env env, napi_value obj, const char *key, const char *where, bool required, uint64_t *out,
                    bool *present) {
  napi_value v;
  napi_valuetype t;
  char msg[256];
  if (!get_prop(env, obj, key, &v, &t)) return false;
  if (present) *present = t != napi_undefined;
  if (t == napi_undefined && !required) return true;
  double d;
  if (t != napi_number || napi_get_value_double(env, v, &d) != napi_ok || !(d >= 0) || d > 9007199254740992.0 ||
      d != (double)(uint64_t)d) {
    snprintf(msg, sizeof msg, "seccompInstall: %s: '%s' must be a non-negative integer", where, key);
    throw_err(env, ERR_TYPE, "ERR_INVALID_ARG_TYPE", msg, 0, NULL);
    return false;
  }
  *out = (uint64_t)d;
  return true;
}

static napi_value js_seccomp_install(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  NAPI_OK_OR_THROW(napi_get_cb_info(env, info, &argc, argv, NULL, NULL), "cb info");
  bool is_array = false;
  if (argc < 1 || napi_is_array(env, argv[0], &is_array) != napi_ok || !is_array) {
    throw_err(env, ERR_TYPE, "ERR_INVALID_ARG_TYPE", "seccompInstall(rules): rules must be an array", 0, NULL);
    return NULL;
  }
  uint32_t n;
  NAPI_OK_OR_THROW(napi_get_array_length(env, argv[0], &n), "array length");

  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ERRNO(EPERM));
  if (ctx == NULL) {
    throw_plain(env, "ERR_TAPNET_SECCOMP", "seccompInstall: seccomp_init failed (out of memory?)");
    return NULL;
  }
  /* Distinct allowed syscall numbers, for the count the node reports. */
  static int allowed[MAX_SYSCALLS];
  size_t n_allowed = 0;
  napi_value skipped;
  uint32_t n_skipped = 0;
  char msg[512];
  if (napi_create_array(env, &skipped) != napi_ok) goto napi_fail;
  /* A system call of another ABI (i386 or x32 from this x86_64 process) is never ours:
   * only an exploit issues one, and it ends the process. */
  if (seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS) != 0) {
    throw_plain(env, "ERR_TAPNET_SECCOMP", "seccompInstall: cannot set the action for foreign-ABI system calls");
    goto fail;
  }
  /* A binary search over the syscall number instead of a linear chain: the forwarding
   * path's calls (readv, write, sendmmsg, recvmmsg, epoll_pwait) should not pay for
   * their place in the list. Best effort: an older libseccomp keeps the linear chain. */
  (void)seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
  if (seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1) != 0) {
    throw_plain(env, "ERR_TAPNET_SECCOMP",
                "seccompInstall: this libseccomp or kernel cannot synchronise a filter across threads (TSYNC)");
    goto fail;
  }

  for (uint32_t i = 0; i < n; i++) {
    napi_value r, v;
    napi_valuetype t;
    if (napi_get_element(env, argv[0], i, &r) != napi_ok) goto napi_fail;
    char name[MAX_NAME];
    size_t len;
    if (!get_prop(env, r, "name", &v, &t)) goto napi_fail;
    if (t != napi_string || napi_get_value_string_utf8(env, v, name, sizeof name, &len) != napi_ok || len == 0 ||
        len >= sizeof name - 1) {
      snprintf(msg, sizeof msg, "seccompInstall: rule %u: 'name' must be a system call name", i);
      throw_err(env, ERR_TYPE, "ERR_INVALID_ARG_TYPE", msg, 0, NULL);
      goto fail;
    }
    int nr = seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR) {
      snprintf(msg, sizeof msg, "seccompInstall: rule %u: '%s' is not a system call libseccomp knows", i, name);
      throw_err(env, ERR_RANGE, "ERR_TAPNET_SECCOMP", msg, 0, NULL);
      goto fail;
    }
    if (nr < 0) { /* known, but not on this architecture */
      napi_value s;
      if (napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &s) != napi_ok ||
          napi_set_element(env, skipped, n_skipped++, s) != napi_ok)
        goto napi_fail;
      continue;
    }
    uint64_t err = 0;
    bool has_errno = false;
    if (!get_u64(env, r, "errno", name, false, &err, &has_errno)) goto fail;
    if (has_errno && (err == 0 || err > 4095)) {
      snprintf(msg, sizeof msg, "seccompInstall: %s: errno must be in 1..4095", name);
      throw_err(env, ERR_RANGE, "ERR_OUT_OF_RANGE", msg, 0, NULL);
      goto fail;
    }
    struct scmp_arg_cmp cmp[MAX_ARGS];
    uint32_t n_cmp = 0;
    if (!get_prop(env, r, "args", &v, &t)) goto napi_fail;
    if (t != napi_undefined) {
      bool arr = false;
      if (napi_is_array(env, v, &arr) != napi_ok || !arr || napi_get_array_length(env, v, &n_cmp) != napi_ok ||
          n_cmp > MAX_ARGS) {
        snprintf(msg, sizeof msg, "seccompInstall: %s: 'args' must be an array of at most %d comparisons", name,
                 MAX_ARGS);
        throw_err(env, ERR_TYPE, "ERR_INVALID_ARG_TYPE", msg, 0, NULL);
        goto fail;
      }
      for (uint32_t k = 0; k < n_cmp; k++) {
        napi_value a;
        uint64_t index, mask, value;
        if (napi_get_element(env, v, k, &a) != napi_ok) goto napi_fail;
        if (!get_u64(env, a, "index", name, true, &index, NULL) || !get_u64(env, a, "mask", name, true, &mask, NULL) ||
            !get_u64(env, a, "value", name, true, &value, NULL))
          goto fail;
        if (index >= MAX_ARGS) {
          snprintf(msg, sizeof msg, "seccompInstall: %s: argument index %llu is not in 0..5", name,
                   (unsigned long long)index);
          throw_err(env, ERR_RANGE, "ERR_OUT_OF_RANGE", msg, 0, NULL);
          goto fail;
        }
        cmp[k] = (struct scmp_arg_cmp){.arg = (unsigned)index, .op = SCMP_CMP_MASKED_EQ, .datum_a = mask, .datum_b = value};
      }
    }
    uint32_t action = has_errno ? SCMP_ACT_ERRNO((uint16_t)err) : SCMP_ACT_ALLOW;
    int rc = seccomp_rule_add_array(ctx, action, nr, n_cmp, n_cmp ? cmp : NULL);
    if (rc != 0) {
      snprintf(msg, sizeof msg, "seccompInstall: cannot add the rule for %s (%s)", name, strerror(-rc));
      throw_plain(env, "ERR_TAPNET_SECCOMP", msg);
      goto fail;
    }
    if (!has_errno) {
      bool seen = false;
      for (size_t j = 0; j < n_allowed; j++) seen = seen || allowed[j] == nr;
      if (!seen && n_allowed < MAX_SYSCALLS) allowed[n_allowed++] = nr;
    }
  }

  int rc = seccomp_load(ctx);
  if (rc != 0) {
    /* With TSYNC, a positive return is the id of a thread that could not be synchronised. */
    if (rc > 0)
      snprintf(msg, sizeof msg, "seccompInstall: thread %d could not take the filter (it has another one)", rc);
    else
      snprintf(msg, sizeof msg, "seccompInstall: loading the filter failed (%s)", strerror(-rc));
    throw_plain(env, "ERR_TAPNET_SECCOMP", msg);
    goto fail;
  }
  seccomp_release(ctx);

  napi_value out, count;
  NAPI_OK_OR_THROW(napi_create_object(env, &out), "object");
  NAPI_OK_OR_THROW(napi_create_uint32(env, (uint32_t)n_allowed, &count), "count");
  NAPI_OK_OR_THROW(napi_set_named_property(env, out, "allowed", count), "allowed");
  NAPI_OK_OR_THROW(napi_set_named_property(env, out, "skipped", skipped), "skipped");
  return out;

napi_fail:
  throw_plain(env, "ERR_TAPNET_NAPI", "seccompInstall: internal N-API failure reading the rules");
fail:
  seccomp_release(ctx);
  return NULL;
}

bool seccomp_init_exports(napi_env env, napi_value exports) {
  napi_property_descriptor fns[] = {
      {"seccompInstall", NULL, js_seccomp_install, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, sizeof fns / sizeof fns[0], fns) == napi_ok;
}
