#include "../check.h"
#include "nbcanvas/sandbox.h"

#define HC(body, key) json_object_get(json_object_get(body, "HostConfig"), key)

TEST(sandbox__hardened_create_body)
{
    struct sandbox_limits l = {512LL << 20, 1.5, 128,       128LL << 20,
                               64LL << 20,  256, 32LL << 20};
    json_t *cmd = json_pack("[s]", "true");
    struct sandbox_spec spec = {"img:1", cmd,  NULL, &l,    "runsc", "job-1",
                                "svc-a", NULL, 99,   false, 0};
    json_t *b = sandbox_create_body(&spec);
    json_t *ul = HC(b, "Ulimits");
    const char *o;

    CHECK_STREQ(json_string_value(json_object_get(b, "Image")), "img:1");
    /* no account on the host: never 1000, a person's uid on many hosts */
    CHECK_STREQ(json_string_value(json_object_get(b, "User")),
                "100000:100000");
    CHECK(json_is_true(json_object_get(b, "NetworkDisabled")));
    CHECK_STREQ(json_string_value(HC(b, "NetworkMode")), "none");
    CHECK(json_integer_value(HC(b, "Memory")) == 512LL << 20);
    CHECK(json_integer_value(HC(b, "MemorySwap")) == 512LL << 20);
    CHECK(json_integer_value(HC(b, "NanoCpus")) == 1500000000LL);
    CHECK(json_integer_value(HC(b, "PidsLimit")) == 128 + 256); /* gVisor */
    CHECK(json_is_true(HC(b, "ReadonlyRootfs")));
    CHECK(json_is_true(HC(b, "Init")));
    CHECK(json_is_false(HC(b, "Privileged")));
    CHECK(json_is_false(HC(b, "OomKillDisable")));
    CHECK_STREQ(json_string_value(json_array_get(HC(b, "CapDrop"), 0)), "ALL");
    CHECK_STREQ(json_string_value(json_array_get(HC(b, "SecurityOpt"), 0)),
                "no-new-privileges:true");
    CHECK_STREQ(json_string_value(json_object_get(HC(b, "LogConfig"), "Type")),
                "none");
    CHECK_STREQ(json_string_value(HC(b, "Runtime")), "runsc");
    CHECK(strstr(json_string_value(json_object_get(HC(b, "Tmpfs"), "/tmp")),
                 "size=67108864") != NULL);
    CHECK(json_array_size(ul) == 3);
    CHECK_STREQ(
        json_string_value(json_object_get(json_array_get(ul, 2), "Name")),
        "core");
    CHECK(json_integer_value(json_object_get(json_array_get(ul, 2), "Hard")) ==
          0);
    CHECK(HC(b, "Binds") == NULL);
    CHECK(HC(b, "Mounts") == NULL); /* nothing from the host */
    o = json_string_value(json_object_get(HC(b, "Tmpfs"), "/home/sandbox"));
    CHECK(o && strstr(o, "size=134217728") && strstr(o, "nosuid"));
    /* gVisor ignores uid= on tmpfs: there it is sticky and shared */
    CHECK(strstr(o, "mode=1777") != NULL);
    CHECK_STREQ(json_string_value(json_object_get(json_object_get(b, "Labels"),
                                                  SANDBOX_LABEL)),
                "1");
    CHECK_STREQ(json_string_value(json_object_get(json_object_get(b, "Labels"),
                                                  "org.nbcanvas.deadline")),
                "99");
    /* the owner comes from the spec, not from process-wide state */
    CHECK_STREQ(json_string_value(json_object_get(json_object_get(b, "Labels"),
                                                  "org.nbcanvas.owner")),
                "svc-a");
    json_decref(b);
    json_decref(cmd);
}

TEST(sandbox__default_runtime_omitted)
{
    const char *o;
    struct sandbox_limits l = {1 << 28, 1, 64, 1 << 26, 1 << 26, 256, 1 << 24};
    json_t *cmd = json_pack("[s]", "true");
    struct sandbox_spec spec = {"img",   cmd,  NULL, &l,   "", NULL,
                                "svc-b", NULL, 0,    true, 256};
    json_t *b = sandbox_create_body(&spec);

    CHECK(HC(b, "Runtime") == NULL);
    CHECK(json_integer_value(HC(b, "PidsLimit")) == 64);
    o = json_string_value(json_object_get(HC(b, "Tmpfs"), "/home/sandbox"));
    CHECK(o && strstr(o, "uid=1000") && strstr(o, "mode=0700"));
    CHECK(json_array_size(json_object_get(b, "Env")) == 0);
    /* a command that is its own init: no docker-init in front */
    CHECK(json_is_false(HC(b, "Init")));
    CHECK(json_integer_value(HC(b, "CpuShares")) == 256);
    json_decref(b);
    json_decref(cmd);
}
