/*
 * Throng compatibility layer: libsrtp 3.x calls implemented with libsrtp 2.5.
 * See include/srtp.h for what is bridged and why. This file includes the 2.x
 * header only, so the names below are the real 2.x functions.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* Declarations of the throng_srtp3_* functions, without the 3.x renames. */
#define THRONG_SRTP3_NO_RENAME
#include "include/srtp.h"

/* SRTCP appends its 32-bit E flag + index after the payload, before the tag. */
#define THRONG_SRTCP_INDEX_LEN 4

/* 2.x codes 28 and 29 do not exist; the 3.x values are returned as such. */
#define srtp_err_status_buffer_small ((srtp_err_status_t)28)

struct throng_srtp3_policy_ctx {
    srtp_policy_t policy;
    bool profile_set;
    unsigned char *key; /* master key || master salt, as 2.x expects */
};

srtp_err_status_t throng_srtp3_policy_create(throng_srtp3_policy_t *policy)
{
    if (policy == NULL) {
        return srtp_err_status_bad_param;
    }
    struct throng_srtp3_policy_ctx *ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL) {
        return srtp_err_status_alloc_fail;
    }
    *policy = ctx;
    return srtp_err_status_ok;
}

void throng_srtp3_policy_destroy(throng_srtp3_policy_t policy)
{
    if (policy == NULL) {
        return;
    }
    if (policy->key != NULL) {
        /* Key material must not linger in freed memory. */
        memset(policy->key, 0, SRTP_MAX_KEY_LEN);
        free(policy->key);
    }
    free(policy);
}

srtp_err_status_t throng_srtp3_policy_set_ssrc(throng_srtp3_policy_t policy, srtp_ssrc_t ssrc)
{
    if (policy == NULL) {
        return srtp_err_status_bad_param;
    }
    policy->policy.ssrc = ssrc;
    return srtp_err_status_ok;
}

srtp_err_status_t throng_srtp3_policy_set_profile(throng_srtp3_policy_t policy,
                                                  srtp_profile_t profile)
{
    if (policy == NULL) {
        return srtp_err_status_bad_param;
    }
    srtp_err_status_t err =
        srtp_crypto_policy_set_from_profile_for_rtp(&policy->policy.rtp, profile);
    if (err != srtp_err_status_ok) {
        return err;
    }
    err = srtp_crypto_policy_set_from_profile_for_rtcp(&policy->policy.rtcp, profile);
    if (err != srtp_err_status_ok) {
        return err;
    }
    policy->profile_set = true;
    return srtp_err_status_ok;
}

srtp_err_status_t throng_srtp3_policy_add_key(throng_srtp3_policy_t policy,
                                              const uint8_t *key,
                                              size_t key_len,
                                              const uint8_t *salt,
                                              size_t salt_len,
                                              const uint8_t *mki,
                                              size_t mki_len)
{
    if (policy == NULL || key == NULL || (salt == NULL && salt_len != 0)) {
        return srtp_err_status_bad_param;
    }
    /* One master key per policy and no MKI: all that mediasoup uses. */
    if (mki != NULL || mki_len != 0 || policy->key != NULL) {
        return srtp_err_status_bad_param;
    }
    if (key_len + salt_len > SRTP_MAX_KEY_LEN) {
        return srtp_err_status_bad_param;
    }
    unsigned char *buf = calloc(1, SRTP_MAX_KEY_LEN);
    if (buf == NULL) {
        return srtp_err_status_alloc_fail;
    }
    memcpy(buf, key, key_len);
    if (salt_len != 0) {
        memcpy(buf + key_len, salt, salt_len);
    }
    policy->key = buf;
    policy->policy.key = buf;
    return srtp_err_status_ok;
}

srtp_err_status_t throng_srtp3_policy_set_window_size(throng_srtp3_policy_t policy,
                                                      size_t window_size)
{
    if (policy == NULL) {
        return srtp_err_status_bad_param;
    }
    policy->policy.window_size = (unsigned long)window_size;
    return srtp_err_status_ok;
}

srtp_err_status_t throng_srtp3_policy_set_allow_repeat_tx(throng_srtp3_policy_t policy,
                                                          bool allow)
{
    if (policy == NULL) {
        return srtp_err_status_bad_param;
    }
    policy->policy.allow_repeat_tx = allow ? 1 : 0;
    return srtp_err_status_ok;
}

srtp_err_status_t throng_srtp3_create(srtp_t *session, const throng_srtp3_policy_t policy)
{
    if (session == NULL || policy == NULL || !policy->profile_set || policy->key == NULL) {
        return srtp_err_status_bad_param;
    }
    /* 2.x keeps no reference to the policy after srtp_create returns. */
    return srtp_create(session, &policy->policy);
}

/*
 * 2.x protects in place and may append up to `trailer` bytes; 3.x writes into
 * a separate buffer whose capacity is *out_len. Copy, then protect in place.
 */
static srtp_err_status_t throng_protect_common(srtp_t ctx,
                                               const uint8_t *in,
                                               size_t in_len,
                                               uint8_t *out,
                                               size_t *out_len,
                                               size_t trailer,
                                               int is_rtcp)
{
    if (ctx == NULL || in == NULL || out == NULL || out_len == NULL) {
        return srtp_err_status_bad_param;
    }
    if (in_len > (size_t)INT_MAX - trailer) {
        return srtp_err_status_bad_param;
    }
    if (*out_len < in_len + trailer) {
        return srtp_err_status_buffer_small;
    }
    if (out != in) {
        memmove(out, in, in_len);
    }
    int len = (int)in_len;
    srtp_err_status_t err = is_rtcp ? srtp_protect_rtcp(ctx, out, &len) : srtp_protect(ctx, out, &len);
    if (err != srtp_err_status_ok) {
        return err;
    }
    *out_len = (size_t)len;
    return srtp_err_status_ok;
}

static srtp_err_status_t throng_unprotect_common(srtp_t ctx,
                                                 const uint8_t *in,
                                                 size_t in_len,
                                                 uint8_t *out,
                                                 size_t *out_len,
                                                 int is_rtcp)
{
    if (ctx == NULL || in == NULL || out == NULL || out_len == NULL) {
        return srtp_err_status_bad_param;
    }
    if (in_len > (size_t)INT_MAX) {
        return srtp_err_status_bad_param;
    }
    /* Unprotecting only shrinks the packet, but the output must hold the input. */
    if (*out_len < in_len) {
        return srtp_err_status_buffer_small;
    }
    if (out != in) {
        memmove(out, in, in_len);
    }
    int len = (int)in_len;
    srtp_err_status_t err =
        is_rtcp ? srtp_unprotect_rtcp(ctx, out, &len) : srtp_unprotect(ctx, out, &len);
    if (err != srtp_err_status_ok) {
        return err;
    }
    *out_len = (size_t)len;
    return srtp_err_status_ok;
}

srtp_err_status_t throng_srtp3_protect(srtp_t ctx,
                                       const uint8_t *rtp,
                                       size_t rtp_len,
                                       uint8_t *srtp,
                                       size_t *srtp_len,
                                       size_t mki_index)
{
    if (mki_index != 0) {
        return srtp_err_status_bad_mki;
    }
    return throng_protect_common(ctx, rtp, rtp_len, srtp, srtp_len, SRTP_MAX_TAG_LEN, 0);
}

srtp_err_status_t throng_srtp3_unprotect(srtp_t ctx,
                                         const uint8_t *srtp,
                                         size_t srtp_len,
                                         uint8_t *rtp,
                                         size_t *rtp_len)
{
    return throng_unprotect_common(ctx, srtp, srtp_len, rtp, rtp_len, 0);
}

srtp_err_status_t throng_srtp3_protect_rtcp(srtp_t ctx,
                                            const uint8_t *rtcp,
                                            size_t rtcp_len,
                                            uint8_t *srtcp,
                                            size_t *srtcp_len,
                                            size_t mki_index)
{
    if (mki_index != 0) {
        return srtp_err_status_bad_mki;
    }
    return throng_protect_common(
        ctx, rtcp, rtcp_len, srtcp, srtcp_len, SRTP_MAX_TAG_LEN + THRONG_SRTCP_INDEX_LEN, 1);
}

srtp_err_status_t throng_srtp3_unprotect_rtcp(srtp_t ctx,
                                              const uint8_t *srtcp,
                                              size_t srtcp_len,
                                              uint8_t *rtcp,
                                              size_t *rtcp_len)
{
    return throng_unprotect_common(ctx, srtcp, srtcp_len, rtcp, rtcp_len, 1);
}

srtp_err_status_t throng_srtp3_stream_remove(srtp_t session, uint32_t ssrc)
{
    /* Both take the SSRC in network byte order (mediasoup passes htonl(ssrc)). */
    return srtp_remove_stream(session, ssrc);
}
