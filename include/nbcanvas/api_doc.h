#ifndef NBCANVAS_API_DOC_H
#define NBCANVAS_API_DOC_H

/*
 * The OpenAPI 3.1 document of the HTTP API (src/openapi.json), compiled
 * into the binary. It is the one home of the API's schemas: GET
 * /openapi.json serves it as it is, and the MCP tools take their input and
 * output schemas from its components (the tools are listed in its
 * "x-mcp-tools"), with every $ref inlined, since a tool's schema must
 * stand alone.
 */

#include <jansson.h>
#include <stddef.h>

/* The document's bytes (borrowed, static). */
const char *api_doc_text(size_t *len);

/* The document parsed (new reference), or NULL if it does not parse,
 * which is a build's bug (a unit test loads it). */
json_t *api_doc_load(void);

/* components.schemas.<name> of doc with each "#/components/schemas/..."
 * $ref replaced by what it names (new reference), or NULL when the name,
 * or a name it refers to, is missing or the nesting is deeper than 32. */
json_t *api_doc_schema(json_t *doc, const char *name);

#endif
