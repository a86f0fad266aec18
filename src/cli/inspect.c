/* inspect.c: `nntrain inspect FILE.h5`: print what an nntrain HDF5 file holds.
 *
 * The root attribute "format" says what kind of file it is; each kind has
 * one entry in `kinds` (name, printer). Shards ("nntrain-shard") are
 * handled here; another kind (e.g. checkpoints) is added by writing its
 * printer and adding a row to the table. Checkpoints
 * ("nntrain-checkpoint") are read and fully verified before anything is
 * printed. */
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/mem.h"
#include "coordinator/checkpoint.h"
#include "coordinator/job.h"
#include "worker/h5io.h"
#include "worker/dataset.h"

#define INSPECT_MAX_CHANNELS_SHOWN 8
#define INSPECT_METRICS_SHOWN 3

static void print_doubles(const char *label, const double *v, int n) {
  printf("%-15s", label);
  int shown = n < INSPECT_MAX_CHANNELS_SHOWN ? n : INSPECT_MAX_CHANNELS_SHOWN;
  for (int i = 0; i < shown; i++) printf("%s%.6g", i ? " " : "", v[i]);
  if (shown < n) printf(" ... (%d channels)", n);
  printf("\n");
}

static void shape_text(const nn_shape *s, char *buf, size_t n) {
  size_t k = (size_t)snprintf(buf, n, "[");
  for (int i = 0; i < s->ndim && k < n; i++)
    k += (size_t)snprintf(buf + k, n - k, "%s%d", i ? ", " : "", s->dim[i]);
  if (k < n) snprintf(buf + k, n - k, "]");
}

/* Print a data shard: description, statistics, storage, label histogram. */
static int inspect_shard(const char *path, nn_error *err) {
  nn_shard_desc d;
  nn_dataset *ds = NULL;
  int64_t *hist = NULL;
  int rc = nn_shard_describe(path, &d, err);
  if (rc) return rc;
  if ((rc = nn_dataset_open(&ds, path, NULL, err))) return rc;
  const nn_dataset_info *info = nn_dataset_get_info(ds);
  char shp[64];
  shape_text(&info->sample, shp, sizeof shp);
  printf("%-15s%s\n", "file", path);
  printf("%-15s%s, version %d\n", "format", d.format, d.version);
  printf("%-15s%s (shard %d of %d)\n", "split", d.split, d.shard_index + 1, d.shard_count);
  printf("%-15s%s\n", "source", d.source);
  printf("%-15s%lld\n", "samples", (long long)info->n);
  printf("%-15s%s\n", "sample shape", shp);
  if (info->vocab_size > 0) {
    printf("%-15sint32 token ids, vocabulary %d (0 = padding)\n", "type", info->vocab_size);
    const int32_t *len = nn_dataset_lengths(ds);
    int64_t sum = 0;
    int lo = info->sample.dim[0], hi = 0;
    for (int64_t i = 0; len && i < info->n; i++) {
      sum += len[i];
      if (len[i] < lo) lo = len[i];
      if (len[i] > hi) hi = len[i];
    }
    if (info->n > 0)
      printf("%-15s%d to %d, mean %.2f\n", "lengths", lo, hi, (double)sum / (double)info->n);
  } else {
    printf("%-15s%s\n", "type", info->ftype == NN_FEAT_U8 ? "uint8" : "float32");
  }
  if (info->stream)
    printf("%-15sthe next token (rows of one stream, for language models)\n", "targets");
  else if (info->num_classes > 0)
    printf("%-15s%d\n", "classes", info->num_classes);
  else if (info->multilabel) /* the targets table below: mean = the share of positives */
    printf("%-15s0 (multi-label: %d 0/1 labels, attribute multi_label)\n", "classes",
           info->target_dim);
  else
    printf("%-15s0 (regression, %d target%s)\n", "classes", info->target_dim,
           info->target_dim == 1 ? "" : "s");
  double inv = 1.0 / info->feature_scale;
  if (fabs(inv - round(inv)) < 1e-9 && inv > 1.5)
    printf("%-15s%.9g (1/%.0f)\n", "feature_scale", info->feature_scale, inv);
  else
    printf("%-15s%.9g\n", "feature_scale", info->feature_scale);
  print_doubles("mean", info->mean, info->channels);
  print_doubles("std", info->std, info->channels);
  char chunk[96] = "contiguous (not chunked)";
  if (d.chunk_ndim > 0) {
    size_t k = (size_t)snprintf(chunk, sizeof chunk, "chunks [");
    for (int i = 0; i < d.chunk_ndim && k < sizeof chunk; i++)
      k += (size_t)snprintf(chunk + k, sizeof chunk - k, "%s%lld", i ? ", " : "",
                            (long long)d.chunk[i]);
    if (k < sizeof chunk) snprintf(chunk + k, sizeof chunk - k, "]");
  }
  char comp[64] = "uncompressed";
  if (d.deflate >= 0)
    snprintf(comp, sizeof comp, "deflate %d%s", d.deflate, d.shuffle ? " + shuffle" : "");
  printf("%-15s%s, %s; %.2f MB raw, %.2f MB stored (%.1fx)\n", "/features", chunk, comp,
         (double)d.raw_bytes / 1e6, (double)d.stored_bytes / 1e6,
         d.stored_bytes > 0 ? (double)d.raw_bytes / (double)d.stored_bytes : 0.0);
  if (info->num_classes > 0) {
    hist = nn_calloc((size_t)info->num_classes, sizeof *hist);
    if (!hist) {
      rc = nn_error_set(err, NN_ENOMEM, "out of memory");
      goto cleanup;
    }
    const int32_t *lab = nn_dataset_labels(ds);
    int64_t total = 0;
    if (info->token_labels) { /* a class per valid timestep */
      const int32_t *len = nn_dataset_lengths(ds);
      const int T = info->sample.dim[0];
      for (int64_t i = 0; i < info->n; i++)
        for (int t = 0; t < len[i]; t++, total++) hist[lab[i * T + t]]++;
    } else {
      for (int64_t i = 0; i < info->n; i++, total++) hist[lab[i]]++;
    }
    printf("labels         class: count%s\n", info->token_labels ? " (of timesteps)" : "");
    for (int c = 0; c < info->num_classes; c++)
      printf("  %12d: %lld (%.1f%%)\n", c, (long long)hist[c],
             total ? 100.0 * (double)hist[c] / (double)total : 0.0);
  } else {
    const float *t = nn_dataset_targets(ds);
    int T = info->target_dim;
    printf("targets        dim: min / mean / max\n");
    for (int j = 0; j < T; j++) {
      double lo = INFINITY, hi = -INFINITY, sum = 0;
      for (int64_t i = 0; i < info->n; i++) {
        double v = t[i * T + j];
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
        sum += v;
      }
      printf("  %12d: %.6g / %.6g / %.6g\n", j, lo, info->n ? sum / (double)info->n : 0.0, hi);
    }
  }
cleanup:
  free(hist);
  nn_dataset_close(ds);
  return rc;
}

/* Print the job a checkpoint's spec describes: name, layers, optimizer. */
static void print_ckpt_job(const nn_ckpt_snapshot *s) {
  nn_job *job = nn_calloc(1, sizeof *job);
  nn_error e;
  nn_error_clear(&e);
  if (!job || nn_job_unpack(job, s->spec, s->spec_len, &e) != 0) {
    printf("%-15s%zu bytes, cannot decode: %s\n", "spec", s->spec_len,
           job ? e.msg : "out of memory");
    free(job);
    return;
  }
  printf("%-15s%s (%zu bytes of JobSpec)\n", "job", job->name, s->spec_len);
  printf("%-15s%d epochs, global batch %d, loss %s, seed %lld\n", "train", job->train.epochs,
         job->train.batch_size, job->train.loss, (long long)job->train.seed);
  printf("layers         %d\n", job->model.nlayers);
  for (int i = 0; i < job->model.nlayers; i++) {
    const nn_layer_cfg *c = &job->model.layers[i];
    printf("  %12d: %s", i, c->type);
    if (c->name[0]) printf(" '%s'", c->name);
    double units = nn_layer_cfg_num(c, "units"); /* NAN for types without units */
    if (units > 0) printf(", units %.0f", units);
    if (c->activation[0] && strcmp(c->activation, "none") != 0)
      printf(", activation %s", c->activation);
    printf("\n");
  }
  const nn_optim_cfg *o = &job->optimizer;
  printf("%-15s%s, lr %.6g", "optimizer", o->type, o->lr);
  if (!strcmp(o->type, "sgd"))
    printf(", momentum %.6g%s", o->momentum, o->nesterov ? " (nesterov)" : "");
  else
    printf(", betas (%.6g, %.6g), eps %.3g", o->beta1, o->beta2, o->eps);
  printf(", weight_decay %.6g\n", o->weight_decay);
  free(job);
}

/* Print replica r of a checkpoint of version `version`: its tensors with
 * their paths in the file, and its optimizer. */
static void print_replica(const nn_ckpt_replica *r, int version) {
  char pre[NN_NAME_MAX + 16] = "";
  if (version >= 2) snprintf(pre, sizeof pre, "/replicas/%s", r->name);
  printf("%-15s%s: %zu parameters (%zu trained), %zu buffer values\n", "replica", r->name,
         r->nparams, r->ntrainable, r->nbuffers);
  for (int i = 0; i < r->ntensors; i++) {
    const nn_tensor_ref *t = &r->tensors[i];
    char shp[64], name[NN_NAME_MAX * 3 + 32];
    shape_text(&t->shape, shp, sizeof shp);
    snprintf(name, sizeof name, "%s/%s/%s/%s", pre, t->is_buffer ? "buffers" : "params", t->layer,
             t->name);
    printf("  %-40s %-16s %zu%s\n", name, shp, t->count,
           !t->is_buffer && t->offset >= r->ntrainable ? " (frozen)" : "");
  }
  printf("%-15s%s, t %llu, slots:", "optimizer", r->optim_type[0] ? r->optim_type : "(none)",
         (unsigned long long)r->optim_t);
  if (r->nslots == 0) printf(" none");
  for (int k = 0; k < r->nslots; k++)
    printf("%s %s/optimizer/%s/...", k ? "," : "", pre, r->slot_names[k]);
  printf("%s\n", r->nslots ? " (each shaped as its parameter)" : "");
}

/* Print the last INSPECT_METRICS_SHOWN metrics records (lines). */
static void print_metrics_tail(const char *text, size_t len) {
  int lines = 0;
  for (size_t i = 0; i < len; i++)
    if (text[i] == '\n' || i + 1 == len) lines++;
  printf("%-15s%d record%s%s\n", "metrics", lines, lines == 1 ? "" : "s",
         lines > INSPECT_METRICS_SHOWN ? ", the last ones:" : "");
  int skip = lines > INSPECT_METRICS_SHOWN ? lines - INSPECT_METRICS_SHOWN : 0, line = 0;
  const char *p = text;
  while (p && *p) {
    const char *nl = strchr(p, '\n');
    size_t n = nl ? (size_t)(nl - p) : strlen(p);
    if (line++ >= skip) printf("  %.*s\n", (int)n, p);
    p = nl ? nl + 1 : p + n;
  }
}

/* Print a checkpoint: job, state, replicas (tensors, optimizer), the last
 * metrics records. It is read with every check nn_ckpt_read makes, so a
 * damaged file fails here. */
static int inspect_ckpt(const char *path, nn_error *err) {
  nn_ckpt_snapshot s;
  int rc = nn_ckpt_read(path, &s, err);
  if (rc) return rc;
  printf("%-15s%s\n", "file", path);
  printf("%-15s%s, version %d\n", "format", NN_CKPT_FORMAT, s.version);
  printf("%-15s%s\n", "created", s.created);
  printf("%-15s%016llx (verified)\n", "checksum", (unsigned long long)nn_ckpt_checksum(&s));
  print_ckpt_job(&s);
  printf("%-15sstep %lld, epoch %d (%lld steps into it)\n", "position", (long long)s.state.step,
         (int)s.state.epoch, (long long)s.state.epoch_step);
  printf("state\n");
  char v[64];
  for (const nn_ckpt_field *f = nn_ckpt_state_fields(); f->name; f++)
    if (!f->v1_only || s.version == 1)
      printf("  %16s: %s\n", f->name, nn_ckpt_field_str(&s.state, f, v, sizeof v));
  printf("%-15s%d:", "replicas", s.nreplicas);
  for (int i = 0; i < s.nreplicas; i++) printf("%s %s", i ? "," : "", s.rep[i].name);
  printf("%s\n", s.version == 1 ? " (a version 1 file: its one model)" : "");
  for (int i = 0; i < s.nreplicas; i++) print_replica(&s.rep[i], s.version);
  print_metrics_tail(s.metrics, s.metrics_len);
  nn_ckpt_snapshot_free(&s);
  return 0;
}

/* The checkpoint as one JSON object (jansson): version, created, checksum,
 * step, the state fields, and per replica its tensors and optimizer. */
static json_t *ckpt_json(const nn_ckpt_snapshot *s) {
  char v[64];
  json_t *o = json_object(), *st = json_object(), *reps = json_array();
  json_object_set_new(o, "format", json_string(NN_CKPT_FORMAT));
  json_object_set_new(o, "version", json_integer(s->version));
  json_object_set_new(o, "created", json_string(s->created));
  snprintf(v, sizeof v, "%016llx", (unsigned long long)nn_ckpt_checksum(s));
  json_object_set_new(o, "checksum", json_string(v));
  for (const nn_ckpt_field *f = nn_ckpt_state_fields(); f->name; f++) {
    if (f->v1_only && s->version != 1) continue;
    const char *p = (const char *)&s->state + f->offset;
    double d;
    int32_t i32;
    int64_t i64;
    uint64_t u64;
    json_t *x;
    switch (f->type) {
    case NN_CKPT_I32: memcpy(&i32, p, 4); x = json_integer(i32); break;
    case NN_CKPT_I64: memcpy(&i64, p, 8); x = json_integer((json_int_t)i64); break;
    case NN_CKPT_U64: memcpy(&u64, p, 8); x = json_integer((json_int_t)u64); break;
    default: /* JSON has no NaN or infinity: those become strings */
      memcpy(&d, p, 8);
      x = isfinite(d) ? json_real(d) : json_string(nn_ckpt_field_str(&s->state, f, v, sizeof v));
    }
    json_object_set_new(st, f->name, x);
  }
  json_object_set_new(o, "state", st);
  for (int i = 0; i < s->nreplicas; i++) {
    const nn_ckpt_replica *r = &s->rep[i];
    json_t *jr = json_object(), *ts = json_array(), *sl = json_array();
    json_object_set_new(jr, "name", json_string(r->name));
    json_object_set_new(jr, "nparams", json_integer((json_int_t)r->nparams));
    json_object_set_new(jr, "ntrainable", json_integer((json_int_t)r->ntrainable));
    json_object_set_new(jr, "nbuffers", json_integer((json_int_t)r->nbuffers));
    json_object_set_new(jr, "optim_type", json_string(r->optim_type));
    json_object_set_new(jr, "optim_t", json_integer((json_int_t)r->optim_t));
    for (int k = 0; k < r->nslots; k++) json_array_append_new(sl, json_string(r->slot_names[k]));
    json_object_set_new(jr, "slots", sl);
    for (int k = 0; k < r->ntensors; k++) {
      const nn_tensor_ref *t = &r->tensors[k];
      json_t *jt = json_object(), *shape = json_array();
      for (int d = 0; d < t->shape.ndim; d++)
        json_array_append_new(shape, json_integer(t->shape.dim[d]));
      json_object_set_new(jt, "layer", json_string(t->layer));
      json_object_set_new(jt, "name", json_string(t->name));
      json_object_set_new(jt, "kind", json_string(t->is_buffer ? "buffer" : "param"));
      json_object_set_new(jt, "shape", shape);
      json_array_append_new(ts, jt);
    }
    json_object_set_new(jr, "tensors", ts);
    json_array_append_new(reps, jr);
  }
  json_object_set_new(o, "replicas", reps);
  return o;
}

static int inspect_ckpt_json(const char *path, nn_error *err) {
  nn_ckpt_snapshot s;
  int rc = nn_ckpt_read(path, &s, err);
  if (rc) return rc;
  json_t *o = ckpt_json(&s);
  json_object_set_new(o, "file", json_string(path));
  char *text = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
  if (!text) rc = nn_error_set(err, NN_ENOMEM, "out of memory for the JSON text");
  else printf("%s\n", text);
  free(text);
  json_decref(o);
  nn_ckpt_snapshot_free(&s);
  return rc;
}

/* Print a vectors file (`nntrain prepare vectors`, docs/finetuning.md): its
 * sources, table and counts, from the root attributes. */
static int inspect_vectors(const char *path, nn_error *err) {
  hid_t id;
  int rc = nn_h5_open_read(path, "an nntrain vectors file", NULL, &id, err);
  if (rc) return rc;
  nn_h5_file f = {id, path, NN_EDATA, "an nntrain vectors file"};
  static const char *const strs[] = {"layer", "vectors_file", "vocab_file"};
  static const char *const nums[] = {"vocab_size", "tokens_found", "rows_drawn",
                                     "duplicates_skipped", "padding_idx", "seed"};
  char sv[3][1024];
  int64_t nv[6];
  int32_t dim = 0;
  double sd = 0;
  for (int i = 0; i < 3 && !rc; i++)
    rc = nn_h5_attr_read_str(&f, id, strs[i], sv[i], sizeof sv[i], err);
  for (int i = 0; i < 6 && !rc; i++)
    rc = nn_h5_attr_read_num(&f, id, nums[i], H5T_NATIVE_INT64, &nv[i], 1, 1, NULL, err);
  if (!rc) rc = nn_h5_attr_read_num(&f, id, "dim", H5T_NATIVE_INT32, &dim, 1, 1, NULL, err);
  if (!rc) rc = nn_h5_attr_read_num(&f, id, "oov_std", H5T_NATIVE_DOUBLE, &sd, 1, 1, NULL, err);
  H5Fclose(id);
  if (rc) return rc;
  printf("%-15s%s\n", "file", path);
  printf("%-15snntrain-vectors (an embedding's weight for [init] from)\n", "format");
  printf("%-15s/params/%s/weight [%lld, %d] float32\n", "table", sv[0], (long long)nv[0], dim);
  printf("%-15s%s\n%-15s%s\n", "vectors", sv[1], "vocabulary", sv[2]);
  printf("%-15s%lld of %lld (%lld duplicate lines skipped)\n", "rows found", (long long)nv[1],
         (long long)nv[0], (long long)nv[3]);
  printf("%-15s%lld from N(0, %.6g^2), seed %lld\n", "rows drawn", (long long)nv[2], sd,
         (long long)nv[5]);
  if (nv[4] >= 0)
    printf("%-15s%lld (zeros)\n", "padding row", (long long)nv[4]);
  else
    printf("%-15snone\n", "padding row");
  return 0;
}

/* Kinds of nntrain HDF5 file, by their "format" attribute. */
typedef struct inspect_kind {
  const char *format;
  int (*print)(const char *path, nn_error *err);
  int (*print_json)(const char *path, nn_error *err); /* --json, NULL: not offered */
} inspect_kind;

static const inspect_kind kinds[] = {
  {NN_SHARD_FORMAT, inspect_shard, NULL},
  {NN_CKPT_FORMAT, inspect_ckpt, inspect_ckpt_json},
  {"nntrain-vectors", inspect_vectors, NULL},
};
#define NKINDS (sizeof kinds / sizeof kinds[0])

static void help(FILE *f) {
  fprintf(f,
          "usage: nntrain inspect [--json] FILE.h5\n\n"
          "Print what an nntrain HDF5 file holds. For a data shard: format, split, source,\n"
          "sample shape and type, sample count, classes, feature_scale, mean/std, the\n"
          "chunking and compression of /features, and a per-class label histogram.\n"
          "For a checkpoint (verified first: format, checksum, structure): the job it\n"
          "belongs to (name, layers, optimizer), step and epoch, every state field,\n"
          "its replicas (one, \"model\", for a one-model run or a version 1 file) with\n"
          "every tensor's name and shape and the optimizer slots, and the last metrics\n"
          "records. For a vectors file (prepare vectors): the table, its sources and\n"
          "counts. --json (checkpoints): the version, state, replicas and tensors as\n"
          "one JSON object.\n"
          "Exit code 4 if the file is missing, not HDF5, or not an nntrain file.\n");
}

int nn_cmd_inspect(int argc, char **argv) {
  if (nn_cli_wants_help(argc, argv)) {
    help(stdout);
    return NN_EXIT_OK;
  }
  const char *path = NULL;
  int json = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--json")) {
      json = 1;
      continue;
    }
    if (argv[i][0] == '-' && argv[i][1] != '\0')
      return nn_cli_usage_error("inspect", "unknown option '%s'", argv[i]);
    if (path) return nn_cli_usage_error("inspect", "expected one FILE, got '%s' too", argv[i]);
    path = argv[i];
  }
  if (!path) return nn_cli_usage_error("inspect", "expected a FILE.h5");
  nn_error err;
  nn_error_clear(&err);
  char fmt[64];
  int rc = nn_h5_format(path, fmt, sizeof fmt, &err);
  if (rc) {
    if (rc == NN_EDATA && !strcmp(err.where, "format"))
      nn_error_at(&err, NN_EDATA, path, 0, 0,
                  "an HDF5 file without a 'format' attribute: not an nntrain file");
    return nn_cli_fail(&err);
  }
  for (size_t i = 0; i < NKINDS; i++) {
    if (strcmp(fmt, kinds[i].format) != 0) continue;
    if (json && !kinds[i].print_json)
      return nn_cli_usage_error("inspect", "--json is offered for checkpoints, not '%s' files",
                                kinds[i].format);
    rc = (json ? kinds[i].print_json : kinds[i].print)(path, &err);
    return rc ? nn_cli_fail(&err) : NN_EXIT_OK;
  }
  char known[256];
  size_t k = 0;
  known[0] = '\0';
  for (size_t i = 0; i < NKINDS && k < sizeof known; i++)
    k += (size_t)snprintf(known + k, sizeof known - k, "%s%s", i ? ", " : "", kinds[i].format);
  nn_error_at(&err, NN_EDATA, path, 0, 0, "format '%s' is not one inspect knows (%s)", fmt, known);
  return nn_cli_fail(&err);
}
