/* job_keys.h: internal helpers shared by the job parser (job.c), the JobSpec
 * codec (job_pack.c) and the reference writer (job_doc.c).
 *
 * They work on any nn_key table (core/keys.h): look a key up, check a value
 * against its type and range, read and write a field as text, compare two
 * structs key by key, suggest the nearest name. Nothing here knows which
 * section a table belongs to. Not part of the public interface (nn__ prefix).
 *
 * Range convention: a numeric key whose min and max are both 0 has no range
 * (any value its C type holds). */
#ifndef NN_COORDINATOR_JOB_KEYS_H
#define NN_COORDINATOR_JOB_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "core/keys.h"
#include "coordinator/job.h"
#include "toml/toml.h"

/* Keys every layer has, whatever its type: `type` and `name` (offsets into
 * nn_layer_cfg). Ends with {0}. */
extern const nn_key nn__layer_common_keys[];

/* Number of keys in a table (up to its {0} terminator). */
size_t nn__keys_count(const nn_key *keys);
/* The key called `name`, or NULL. */
const nn_key *nn__keys_find(const nn_key *keys, const char *name);

/* Type of a key for messages and docs: "integer", "float", "boolean",
 * "string", "array of integers". */
const char *nn__key_type_name(const nn_key *k);
/* The same with an article, for "expected an integer". */
const char *nn__key_type_article(const nn_key *k);
/* Range of a numeric key as "[1, 100]", "(0, inf)"; "" if it has none. */
char *nn__key_range_str(const nn_key *k, char *buf, size_t n);

/* Check a value against a key's range / choices. Return 0 if it fits, else
 * -1 with a message (without the key's name) such as
 * "0 is out of range [1, 1000000]" in msg. */
int nn__key_check_int(const nn_key *k, long long v, char *msg, size_t n);
int nn__key_check_float(const nn_key *k, double v, char *msg, size_t n);
int nn__key_check_string(const nn_key *k, const char *s, char *msg, size_t n);

/* Set field k of struct `base` from a TOML value, checking its type and
 * range (an integer is accepted where a float is expected). 0, or -1 with a
 * message (without the key's name) in msg and the position of the offending
 * value (the value itself, or an item of a list) in *line, *col. */
int nn__key_set_toml(const nn_key *k, void *base, const nn_toml_value *v, char *msg,
                     size_t n, int *line, int *col);
/* The same from one TOML value written as text ("0.001", "\"relu\"", "[1, 2]");
 * NN_ENOMEM (message "out of memory") when the text could not be parsed for want of memory. */
int nn__key_set_toml_text(const nn_key *k, void *base, const char *text, char *msg,
                          size_t n, int *line, int *col);

/* Parse `text` as one TOML value (as if written `v = text`). On success *doc
 * is the document (caller frees with nn_toml_free) and *val the value in it.
 * Fails (NN_ESYNTAX, nothing allocated) if text is not exactly one value. */
int nn__toml_parse_value(const char *text, nn_toml_value **doc, const nn_toml_value **val,
                         nn_error *err);

/* Write the value of key k in struct `base` as text (the Extra encoding of
 * proto/nntrain.proto), NUL-terminated into buf. */
void nn__key_format(const nn_key *k, const void *base, char *buf, size_t n);
/* Parse text written by nn__key_format into the field, checking type and
 * range. 0, or -1 with a message in msg. */
int nn__key_parse_text(const nn_key *k, void *base, const char *text, char *msg, size_t n);
/* 1 if field k holds the same value in a and b. */
int nn__key_equal(const nn_key *k, const void *a, const void *b);

/* The candidate closest to `name` by nn_edit_distance, if it is close enough
 * to be a likely typo; else NULL. */
const char *nn__suggest(const char *name, const char *const *cands, size_t ncands);

/* Apply the defaults of every key in `keys` that has one to `base`.
 * NN_EINTERNAL (naming the key) if a default is not valid for its key.
 * `what` names the table in that message ("train", "layer dense"). */
int nn__keys_defaults(const nn_key *keys, void *base, const char *what, nn_error *err);

/* Key table of a layer type's own keys (never NULL; may be empty), as the
 * type declares them: offsets into its options, or into nn_layer_cfg for
 * NN_KEY_CFG keys (core/layer.h). For names and docs; to read or write a
 * cfg use nn__layer_all_keys, whose offsets are all into nn_layer_cfg. */
const nn_key *nn__layer_keys(const nn_layer_ops *ops);

/* Serialize the keys of struct `base` as one protobuf message of type `desc`
 * (a const ProtobufCMessageDescriptor *), each key into the field of its
 * name or, lacking one, into the message's `extra` list. *buf is malloc'ed.
 * The job codec does this per section; other messages may reuse it. */
int nn__keys_pack(const nn_key *keys, const void *base, const void *desc, uint8_t **buf,
                  size_t *len, nn_error *err);
/* The reverse: keys absent from the message keep what base holds; values
 * are checked against their keys (NN_ECKPT if one does not fit). */
int nn__keys_unpack(const nn_key *keys, void *base, const void *desc, const uint8_t *buf,
                    size_t len, nn_error *err);

/* Room for the keys of one layer type, with `type`, `name` and the end. */
#define NN__LAYER_KEYS_MAX 64
/* Copy the keys every layer has (`type` first, `name`, ...) and the keys of
 * layer type ops into out[cap] (ends with {0}), every offset made relative
 * to nn_layer_cfg. Returns the number of keys, or -1 if they do not fit. */
int nn__layer_all_keys(const nn_layer_ops *ops, nn_key *out, size_t cap);

/* Post-checks of a job shared by nn_job_parse and nn_job_unpack: layer names
 * unique and non-empty. Returns 0 or -1 with the message in msg and the
 * offending layer index in *which. */
int nn__job_check_layers(const nn_job *job, int *which, char *msg, size_t n);

#endif
