/*
 * The OpenAPI document compiled into the binary, and its schemas made to
 * stand alone for the MCP tools (api_doc.h). Only local references to
 * components.schemas are used in the document, so inlining them is a walk
 * that copies; the depth cap guards against a reference loop.
 */
#include "nbcanvas/api_doc.h"

#include <string.h>

extern const unsigned char openapi_json[];
extern const size_t openapi_json_len;

#define SCHEMA_REF "#/components/schemas/"
#define MAX_DEPTH 32

const char *api_doc_text(size_t *len)
{
    *len = openapi_json_len;
    return (const char *)openapi_json;
}

json_t *api_doc_load(void)
{
    return json_loadb((const char *)openapi_json, openapi_json_len,
                      JSON_REJECT_DUPLICATES, NULL);
}

static json_t *inline_refs(json_t *schemas, json_t *v, int depth);

static json_t *resolve(json_t *schemas, const char *ref, int depth)
{
    json_t *target;

    if (strncmp(ref, SCHEMA_REF, strlen(SCHEMA_REF)) != 0)
        return NULL;
    target = json_object_get(schemas, ref + strlen(SCHEMA_REF));
    return target ? inline_refs(schemas, target, depth + 1) : NULL;
}

/* A copy of v with every schema reference replaced (new reference). */
static json_t *inline_refs(json_t *schemas, json_t *v, int depth)
{
    json_t *out, *item, *copy;
    const char *key;
    size_t i;

    if (depth > MAX_DEPTH)
        return NULL;
    if (json_is_array(v)) {
        out = json_array();
        json_array_foreach(v, i, item) {
            copy = inline_refs(schemas, item, depth);
            if (!copy) {
                json_decref(out);
                return NULL;
            }
            json_array_append_new(out, copy);
        }
        return out;
    }
    if (!json_is_object(v))
        return json_incref(v);
    if (json_is_string(json_object_get(v, "$ref")))
        return resolve(schemas, json_string_value(json_object_get(v, "$ref")),
                       depth);
    out = json_object();
    json_object_foreach(v, key, item) {
        copy = inline_refs(schemas, item, depth);
        if (!copy) {
            json_decref(out);
            return NULL;
        }
        json_object_set_new(out, key, copy);
    }
    return out;
}

json_t *api_doc_schema(json_t *doc, const char *name)
{
    json_t *schemas = json_object_get(json_object_get(doc, "components"),
                                      "schemas");
    json_t *schema = json_object_get(schemas, name);

    return schema ? inline_refs(schemas, schema, 0) : NULL;
}
