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
    throw_err(env, ERR_PLAIN, "ERR_TAPNET_SECCOMP", "seccompInstall: seccomp_init failed (out of memory?)", 0, NULL);
    return NULL;
  }
  /* Distinct allowed syscall numbers, for the count the node reports. */
  static int allowed[MAX_SYSCALLS];
  size_t n_allowed = 0;
  napi_value skipped;
  uint32_t n_skipped = 0;
  if (napi_create_array(env, &skipped) != napi_ok) goto napi_fail;
  /* A system call of another ABI (i386 or x32 from this x86_64 process) is never ours:
   * only an exploit issues one, and it ends the process. */
  if (seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS) != 0) {
    throw_err(env, ERR_PLAIN, "ERR_TAPNET_SECCOMP", "seccompInstall: cannot set the action for foreign-ABI system calls", 0, NULL);
    goto fail;
  }
  /* A binary search over the syscall number instead of a linear chain: the forwarding
   * path's calls (readv, write, sendmmsg, recvmmsg, epoll_pwait) should not pay for
   * their place in the list. Best effort: an older libseccomp keeps the linear chain. */
  (void)seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
  if (seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1) != 0) {
    throw_err(env, ERR_PLAIN, "ERR_TAPNET_SECCOMP",
              "seccompInstall: this libseccomp or kernel cannot synchronise a filter across threads (TSYNC)", 0, NULL);
    goto fail;
  }

  for (uint32_t i = 0; i < n; i++) {
    napi_value r, v;
    napi_valuetype t;
    if (napi_get_element(env, argv[0], i, &r) != napi_ok) goto napi_fail;
    char name[MAX_NAME];
    size_t len;
    if (napi_get_named_property(env, r, "name", &v) != napi_ok || napi_typeof(env, v, &t) != napi_ok) goto napi_fail;
    if (t != napi_string || napi_get_value_string_utf8(env, v, name, sizeof name, &len) != napi_ok || len == 0 ||
        len >= sizeof name - 1) {
      throw_fmt(env, ERR_TYPE, "ERR_INVALID_ARG_TYPE", "seccompInstall: rule %u: 'name' must be a system call name", i);
      goto fail;
    }
    int nr = seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR) {
      throw_fmt(env, ERR_RANGE, "ERR_TAPNET_SECCOMP", "seccompInstall: rule %u: '%s' is not a system call libseccomp knows",
                i, name);
      goto fail;
    }
    if (nr < 0) { /* known, but not on this architecture */
      napi_value s;
      if (napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &s) != napi_ok ||
          napi_set_element(env, skipped, n_skipped++, s) != napi_ok)
        goto napi_fail;
      continue;
    }
    char where[MAX_NAME + 20];
    snprintf(where, sizeof where, "seccompInstall: %s", name);
    uint64_t err = UINT64_MAX; /* left out: allow */
    const val_spec_t rule[] = {{"errno", VAL_U64, 0, 0, NULL, &err}};
    if (!read_options(env, where, r, rule, 1)) goto fail;
    const bool has_errno = err != UINT64_MAX;
    if (has_errno && (err == 0 || err > 4095)) {
      throw_fmt(env, ERR_RANGE, "ERR_OUT_OF_RANGE", "%s: errno must be in 1..4095", where);
      goto fail;
    }
    struct scmp_arg_cmp cmp[MAX_ARGS];
    uint32_t n_cmp = 0;
    if (napi_get_named_property(env, r, "args", &v) != napi_ok || napi_typeof(env, v, &t) != napi_ok) goto napi_fail;
    if (t != napi_undefined) {
      bool arr = false;
      if (napi_is_array(env, v, &arr) != napi_ok || !arr || napi_get_array_length(env, v, &n_cmp) != napi_ok ||
          n_cmp > MAX_ARGS) {
        throw_fmt(env, ERR_TYPE, "ERR_INVALID_ARG_TYPE", "%s: 'args' must be an array of at most %d comparisons", where,
                  MAX_ARGS);
        goto fail;
      }
      for (uint32_t k = 0; k < n_cmp; k++) {
        napi_value a;
        uint64_t index, mask, value;
        const val_spec_t arg[] = {{"index", VAL_U64, VAL_REQUIRED, 0, NULL, &index},
                                  {"mask", VAL_U64, VAL_REQUIRED, 0, NULL, &mask},
                                  {"value", VAL_U64, VAL_REQUIRED, 0, NULL, &value}};
        if (napi_get_element(env, v, k, &a) != napi_ok) goto napi_fail;
        if (!read_options(env, where, a, arg, 3)) goto fail;
        if (index >= MAX_ARGS) {
          throw_fmt(env, ERR_RANGE, "ERR_OUT_OF_RANGE", "%s: argument index %llu is not in 0..5", where,
                    (unsigned long long)index);
          goto fail;
        }
        cmp[k] = (struct scmp_arg_cmp){.arg = (unsigned)index, .op = SCMP_CMP_MASKED_EQ, .datum_a = mask, .datum_b = value};
      }
    }
    uint32_t action = has_errno ? SCMP_ACT_ERRNO((uint16_t)err) : SCMP_ACT_ALLOW;
    int rc = seccomp_rule_add_array(ctx, action, nr, n_cmp, n_cmp ? cmp : NULL);
    if (rc != 0) {
      throw_fmt(env, ERR_PLAIN, "ERR_TAPNET_SECCOMP", "seccompInstall: cannot add the rule for %s (%s)", name,
                strerror(-rc));
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
      throw_fmt(env, ERR_PLAIN, "ERR_TAPNET_SECCOMP", "seccompInstall: thread %d could not take the filter (it has another one)", rc);
    else
      throw_fmt(env, ERR_PLAIN, "ERR_TAPNET_SECCOMP", "seccompInstall: loading the filter failed (%s)", strerror(-rc));
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
  throw_err(env, ERR_PLAIN, "ERR_TAPNET_NAPI", "seccompInstall: internal N-API failure reading the rules", 0, NULL);
fail:
  seccomp_release(ctx);
  return NULL;
}

bool sandbox_init(napi_env env, napi_value exports) {
  static const named_fn_t fns[] = {
      {"seccompInstall", js_seccomp_install},
  };
  return export_functions(env, exports, fns, VAL_COUNT(fns), "seccompInstall");
}
