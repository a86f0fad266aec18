/* test_dataset.c: HDF5 shard writer and reader (src/worker/shard_write.c,
 * dataset.c, dataset_chunk.c, dataset_read.c, shard_describe.c).
 *
 * Writes small synthetic shards into a fresh temp dir, reads them back in
 * random and repeated order and compares exactly; checks that broken or
 * inconsistent inputs fail with NN_EDATA / NN_ENOTFOUND naming the file. */
#include <hdf5.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "test.h"
#include "test_tmp.h"
#include "worker/dataset.h"
#include "worker/loader.h"

/* A deterministic byte / float for sample i, element k. */
static uint8_t val_u8(int64_t i, size_t k) { return (uint8_t)((i * 131 + (int64_t)k * 7 + 3) % 251); }
static float val_f32(int64_t i, size_t k) { return (float)(i * 0.5 - (double)k * 0.25 + 0.125); }

static void path_in(char *buf, size_t n, const char *name) {
  snprintf(buf, n, "%s/%s", nn_test_tmpdir("dataset"), name);
}

typedef struct spec {
  nn_shape sample;
  nn_feature_type ftype;
  int num_classes, target_dim;
  double scale;
  double mean0;   /* first mean value (to make mismatches) */
  int shard_count;
} spec;

/* Write shard `index` holding global samples [first, first+n) of spec sp. */
static int write_shard(const char *path, const spec *sp, int index, int64_t first, int64_t n,
                       nn_error *err) {
  size_t rowlen = 1;
  for (int i = 0; i < sp->sample.ndim; i++) rowlen *= (size_t)sp->sample.dim[i];
  size_t esz = sp->ftype == NN_FEAT_U8 ? 1 : 4;
  int C = nn_shard_channels(&sp->sample);
  double *mean = calloc((size_t)C, sizeof *mean), *sd = calloc((size_t)C, sizeof *sd);
  uint8_t *x = malloc((size_t)(n ? n : 1) * rowlen * esz);
  int32_t *lab = malloc((size_t)(n ? n : 1) * sizeof *lab);
  float *tg = malloc((size_t)(n ? n : 1) * (size_t)(sp->target_dim ? sp->target_dim : 1) * 4);
  for (int c = 0; c < C; c++) {
    mean[c] = sp->mean0 + c;
    sd[c] = 0.5 + c;
  }
  for (int64_t i = 0; i < n; i++) {
    int64_t g = first + i;
    for (size_t k = 0; k < rowlen; k++) {
      if (sp->ftype == NN_FEAT_U8)
        x[i * (int64_t)rowlen + (int64_t)k] = val_u8(g, k);
      else
        ((float *)(void *)x)[i * (int64_t)rowlen + (int64_t)k] = val_f32(g, k);
    }
    if (sp->num_classes) lab[i] = (int32_t)(g % sp->num_classes);
    for (int t = 0; t < sp->target_dim; t++) tg[i * sp->target_dim + t] = (float)(g * 10 + t);
  }
  nn_shard_meta m = {sp->sample, sp->ftype, sp->num_classes, sp->target_dim, sp->scale, C,
                     mean, sd, "train", "test_dataset", index, sp->shard_count, 0, 0, 0, 0};
  nn_shard_writer *w = NULL;
  int rc = nn_shard_create(&w, path, &m, err);
  /* Append in uneven pieces to exercise the staging buffer. */
  for (int64_t done = 0; !rc && done < n;) {
    int64_t take = 1 + (done * 7) % 900;
    if (take > n - done) take = n - done;
    rc = nn_shard_append(w, x + done * (int64_t)rowlen * (int64_t)esz,
                         sp->num_classes ? lab + done : NULL,
                         sp->num_classes ? NULL : tg + done * sp->target_dim, take, err);
    done += take;
  }
  if (!rc)
    rc = nn_shard_close(w, err);
  else if (w)
    nn_shard_abort(w);
  free(mean);
  free(sd);
  free(x);
  free(lab);
  free(tg);
  return rc;
}

static spec spec_u8(void) {
  spec s = {{3, {2, 3, 5}}, NN_FEAT_U8, 7, 0, 1.0 / 255, 0.25, 3};
  return s;
}

/* Write prefix-000.h5 .. with the given sizes. */
static int write_set(const char *prefix, const spec *sp, const int64_t *sizes, int k,
                     nn_error *err) {
  int64_t first = 0;
  for (int i = 0; i < k; i++) {
    char p[512], name[128];
    snprintf(name, sizeof name, "%s-%03d.h5", prefix, i);
    path_in(p, sizeof p, name);
    int rc = write_shard(p, sp, i, first, sizes[i], err);
    if (rc) return rc;
    first += sizes[i];
  }
  return 0;
}

/* Check x [n, rowlen] / labels / targets against the generator. */
static int check_rows(const spec *sp, const int64_t *idx, int n, const float *x,
                      const int32_t *lab, const float *tg) {
  size_t rowlen = 1;
  for (int i = 0; i < sp->sample.ndim; i++) rowlen *= (size_t)sp->sample.dim[i];
  for (int i = 0; i < n; i++) {
    for (size_t k = 0; k < rowlen; k++) {
      float want = sp->ftype == NN_FEAT_U8
                       ? (float)((double)val_u8(idx[i], k) * sp->scale)
                       : (float)((double)val_f32(idx[i], k) * sp->scale);
      if (x[(size_t)i * rowlen + k] != want) {
        fprintf(stderr, "sample %lld elem %zu: %.9g != %.9g\n", (long long)idx[i], k,
                x[(size_t)i * rowlen + k], want);
        return 0;
      }
    }
    if (lab && lab[i] != (int32_t)(idx[i] % sp->num_classes)) return 0;
    for (int t = 0; tg && t < sp->target_dim; t++)
      if (tg[i * sp->target_dim + t] != (float)(idx[i] * 10 + t)) return 0;
  }
  return 1;
}

static void test_u8_multishard_random(void) {
  nn_error err;
  nn_error_clear(&err);
  spec sp = spec_u8();
  int64_t sizes[3] = {2500, 1, 1200}; /* 2500 rows span 3 chunks of 1024 */
  ASSERT_OK(write_set("u8", &sp, sizes, 3, &err));
  char pat[512];
  path_in(pat, sizeof pat, "u8-*.h5");
  for (int cache = 0; cache <= 1; cache++) {
    nn_dataset_opts o = {cache, 0};
    nn_dataset *ds = NULL;
    ASSERT_OK(nn_dataset_open(&ds, pat, &o, &err));
    const nn_dataset_info *info = nn_dataset_get_info(ds);
    ASSERT_EQ_INT(info->n, 3701);
    ASSERT_EQ_INT(info->nfiles, 3);
    ASSERT_EQ_INT(info->num_classes, 7);
    ASSERT_EQ_INT(info->target_dim, 0);
    ASSERT_EQ_INT(info->ftype, NN_FEAT_U8);
    ASSERT_EQ_INT(info->sample.ndim, 3);
    ASSERT_EQ_INT(info->sample.dim[2], 5);
    ASSERT_EQ_INT(info->channels, 2);
    ASSERT_NEAR(info->mean[1], 1.25, 0);
    ASSERT_NEAR(info->feature_scale, 1.0 / 255, 0);
    enum { N = 300 };
    int64_t idx[N];
    uint64_t st = 12345;
    for (int i = 0; i < N; i++) {
      st = st * 6364136223846793005ULL + 1442695040888963407ULL;
      idx[i] = (int64_t)((st >> 33) % 3701);
    }
    idx[5] = idx[17] = 2500; /* the one-sample shard, twice */
    idx[6] = 3700;           /* the very last */
    idx[7] = 0;
    idx[8] = idx[9] = idx[10] = 1023; /* repeats at a chunk edge */
    idx[11] = 1024;
    float *x = malloc(sizeof(float) * N * 30);
    int32_t lab[N];
    ASSERT_OK(nn_dataset_read(ds, idx, N, x, lab, NULL, &err));
    int ok = check_rows(&sp, idx, N, x, lab, NULL);
    /* A whole range in order, and a read of one. */
    int64_t seq[N];
    for (int i = 0; i < N; i++) seq[i] = 2400 + i;
    int rc2 = nn_dataset_read(ds, seq, N, x, lab, NULL, &err);
    int ok2 = !rc2 && check_rows(&sp, seq, N, x, lab, NULL);
    int rc3 = nn_dataset_read(ds, idx + 6, 1, x, NULL, NULL, &err);
    int ok3 = !rc3 && check_rows(&sp, idx + 6, 1, x, NULL, NULL);
    int64_t bad = 3701;
    int rc4 = nn_dataset_read(ds, &bad, 1, x, NULL, NULL, &err);
    const int32_t *all = nn_dataset_labels(ds);
    int ok5 = all && all[2500] == 2500 % 7 && nn_dataset_targets(ds) == NULL;
    free(x);
    nn_dataset_close(ds);
    ASSERT_TRUE(ok);
    ASSERT_TRUE(ok2);
    ASSERT_TRUE(ok3);
    ASSERT_EQ_INT(rc4, NN_EINVAL);
    ASSERT_TRUE(ok5);
  }
}

static void test_f32_regression(void) {
  nn_error err;
  nn_error_clear(&err);
  spec sp = {{1, {6}}, NN_FEAT_F32, 0, 2, 0.5, -1.0, 2};
  int64_t sizes[2] = {50, 70};
  ASSERT_OK(write_set("reg", &sp, sizes, 2, &err));
  char pat[512];
  path_in(pat, sizeof pat, "reg-*.h5");
  float ref[40 * 6], got[40 * 6], tref[80], tgot[80];
  int64_t idx[40];
  for (int i = 0; i < 40; i++) idx[i] = (i * 37 + 11) % 120;
  idx[3] = idx[4];
  for (int cache = 1; cache >= 0; cache--) {
    nn_dataset_opts o = {cache, 1 << 16};
    nn_dataset *ds = NULL;
    ASSERT_OK(nn_dataset_open(&ds, pat, &o, &err));
    const nn_dataset_info *info = nn_dataset_get_info(ds);
    ASSERT_EQ_INT(info->n, 120);
    ASSERT_EQ_INT(info->num_classes, 0);
    ASSERT_EQ_INT(info->target_dim, 2);
    ASSERT_EQ_INT(info->ftype, NN_FEAT_F32);
    ASSERT_EQ_INT(info->channels, 6);
    int32_t lab[1];
    int rc_lab = nn_dataset_read(ds, idx, 1, NULL, lab, NULL, &err);
    int rc = nn_dataset_read(ds, idx, 40, cache ? ref : got, NULL, cache ? tref : tgot, &err);
    nn_dataset_close(ds);
    ASSERT_EQ_INT(rc_lab, NN_EINVAL);
    ASSERT_OK(rc);
    ASSERT_TRUE(check_rows(&sp, idx, 40, cache ? ref : got, NULL, cache ? tref : tgot));
  }
  ASSERT_TRUE(!memcmp(ref, got, sizeof ref));
  ASSERT_TRUE(!memcmp(tref, tgot, sizeof tref));
}

/* Open a pattern that should fail; return the code and keep err. */
static int open_fail(const char *name, nn_error *err) {
  char pat[512];
  path_in(pat, sizeof pat, name);
  nn_dataset *ds = NULL;
  nn_error_clear(err);
  int rc = nn_dataset_open(&ds, pat, NULL, err);
  nn_dataset_close(ds);
  return rc;
}

static void test_mismatched_shards(void) {
  nn_error err;
  nn_error_clear(&err);
  spec a = spec_u8();
  a.shard_count = 2;
  char p[512];
  /* shape */
  path_in(p, sizeof p, "mm1-000.h5");
  ASSERT_OK(write_shard(p, &a, 0, 0, 10, &err));
  spec b = a;
  b.sample.dim[2] = 4;
  path_in(p, sizeof p, "mm1-001.h5");
  ASSERT_OK(write_shard(p, &b, 1, 10, 10, &err));
  ASSERT_EQ_INT(open_fail("mm1-*.h5", &err), NN_EDATA);
  ASSERT_STR_CONTAINS(err.file, "mm1-001.h5");
  ASSERT_STR_CONTAINS(err.msg, "sample shape [2, 3, 4]");
  ASSERT_STR_CONTAINS(err.msg, "mm1-000.h5");
  /* classes */
  path_in(p, sizeof p, "mm2-000.h5");
  ASSERT_OK(write_shard(p, &a, 0, 0, 10, &err));
  b = a;
  b.num_classes = 8;
  path_in(p, sizeof p, "mm2-001.h5");
  ASSERT_OK(write_shard(p, &b, 1, 10, 10, &err));
  ASSERT_EQ_INT(open_fail("mm2-*.h5", &err), NN_EDATA);
  ASSERT_STR_CONTAINS(err.file, "mm2-001.h5");
  ASSERT_STR_CONTAINS(err.msg, "num_classes 8");
  /* statistics */
  path_in(p, sizeof p, "mm3-000.h5");
  ASSERT_OK(write_shard(p, &a, 0, 0, 10, &err));
  b = a;
  b.mean0 = 0.5;
  path_in(p, sizeof p, "mm3-001.h5");
  ASSERT_OK(write_shard(p, &b, 1, 10, 10, &err));
  ASSERT_EQ_INT(open_fail("mm3-*.h5", &err), NN_EDATA);
  ASSERT_STR_CONTAINS(err.file, "mm3-001.h5");
  ASSERT_STR_CONTAINS(err.msg, "statistics differ");
  /* feature type */
  path_in(p, sizeof p, "mm4-000.h5");
  ASSERT_OK(write_shard(p, &a, 0, 0, 10, &err));
  b = a;
  b.ftype = NN_FEAT_F32;
  path_in(p, sizeof p, "mm4-001.h5");
  ASSERT_OK(write_shard(p, &b, 1, 10, 10, &err));
  ASSERT_EQ_INT(open_fail("mm4-*.h5", &err), NN_EDATA);
  ASSERT_STR_CONTAINS(err.msg, "float32");
  /* shards of two different preparations (shard counts 2 and 3) */
  path_in(p, sizeof p, "mm5-000.h5");
  ASSERT_OK(write_shard(p, &a, 0, 0, 10, &err));
  b = a;
  b.shard_count = 3;
  path_in(p, sizeof p, "mm5-001.h5");
  ASSERT_OK(write_shard(p, &b, 1, 10, 10, &err));
  ASSERT_EQ_INT(open_fail("mm5-*.h5", &err), NN_EDATA);
  ASSERT_STR_CONTAINS(err.file, "mm5-001.h5");
  ASSERT_STR_CONTAINS(err.msg, "different preparations");
}

static void test_not_hdf5_truncated_missing(void) {
  nn_error err;
  nn_error_clear(&err);
  char p[512];
  path_in(p, sizeof p, "junk.h5");
  FILE *f = fopen(p, "w");
  ASSERT_TRUE(f != NULL);
  fputs("this is not an HDF5 file\n", f);
  fclose(f);
  ASSERT_EQ_INT(open_fail("junk.h5", &err), NN_EDATA);
  ASSERT_STR_CONTAINS(err.file, "junk.h5");
  ASSERT_STR_CONTAINS(err.msg, "not an HDF5 file");
  char fmt[32];
  ASSERT_EQ_INT(nn_h5_format(p, fmt, sizeof fmt, &err), NN_EDATA);

  /* A whole shard cut to half its size (as `head -c 50%` would). */
  spec sp = spec_u8();
  sp.shard_count = 1;
  path_in(p, sizeof p, "trunc.h5");
  ASSERT_OK(write_shard(p, &sp, 0, 0, 3000, &err));
  FILE *r = fopen(p, "rb");
  ASSERT_TRUE(r != NULL);
  fseek(r, 0, SEEK_END);
  long size = ftell(r);
  fclose(r);
  ASSERT_TRUE(size > 1000);
  ASSERT_OK(truncate(p, size / 2));
  ASSERT_EQ_INT(open_fail("trunc.h5", &err), NN_EDATA);
  ASSERT_STR_CONTAINS(err.file, "trunc.h5");
  ASSERT_STR_CONTAINS(err.msg, "truncated");
  /* Cut to 100 bytes: the superblock itself is damaged. */
  ASSERT_OK(truncate(p, 100));
  ASSERT_TRUE(open_fail("trunc.h5", &err) == NN_EDATA);
  ASSERT_STR_CONTAINS(err.file, "trunc.h5");
  ASSERT_OK(truncate(p, 0));
  ASSERT_TRUE(open_fail("trunc.h5", &err) == NN_EDATA);

  /* Garbage over the middle of the compressed data: reads fail, no crash. */
  path_in(p, sizeof p, "garbled.h5");
  ASSERT_OK(write_shard(p, &sp, 0, 0, 3000, &err));
  r = fopen(p, "r+b");
  ASSERT_TRUE(r != NULL);
  fseek(r, 0, SEEK_END);
  size = ftell(r);
  fseek(r, size / 2, SEEK_SET);
  for (int i = 0; i < 2000; i++) fputc((i * 37) & 0xff, r);
  fclose(r);
  nn_dataset *ds = NULL;
  int rc = nn_dataset_open(&ds, p, NULL, &err);
  int64_t all[3000];
  for (int i = 0; i < 3000; i++) all[i] = i;
  float *x = malloc(sizeof(float) * 3000 * 30);
  int rr = rc ? rc : nn_dataset_read(ds, all, 3000, x, NULL, NULL, &err);
  free(x);
  nn_dataset_close(ds);
  ASSERT_EQ_INT(rr, NN_EDATA);
  ASSERT_STR_CONTAINS(err.file, "garbled.h5");

  ASSERT_EQ_INT(open_fail("nothing-*.h5", &err), NN_ENOTFOUND);
  ASSERT_STR_CONTAINS(err.msg, "no files match");
  ASSERT_STR_CONTAINS(err.file, "nothing-*.h5");
  ASSERT_EQ_INT(open_fail("absent.h5", &err), NN_ENOTFOUND);
  ASSERT_STR_CONTAINS(err.file, "absent.h5");
  ASSERT_EQ_INT(open_fail("", &err), NN_EDATA); /* the temp dir itself */
  ASSERT_STR_CONTAINS(err.msg, "directory");
}

/* An HDF5 file that is not a shard; a shard missing an attribute. */
static void test_not_a_shard(void) {
  nn_error err;
  nn_error_clear(&err);
  char p[512];
  path_in(p, sizeof p, "plain.h5");
  hid_t f = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  ASSERT_TRUE(f >= 0);
  H5Fclose(f);
  ASSERT_EQ_INT(open_fail("plain.h5", &err), NN_EDATA);
  ASSERT_STR_CONTAINS(err.msg, "missing attribute 'format'");
  ASSERT_STR_CONTAINS(err.file, "plain.h5");
}

static void test_label_out_of_range(void) {
  nn_error err;
  nn_error_clear(&err);
  spec sp = spec_u8();
  sp.shard_count = 1;
  char p[512];
  path_in(p, sizeof p, "badlab.h5");
  ASSERT_OK(write_shard(p, &sp, 0, 0, 40, &err));
  /* Overwrite row 17's label with 7 (num_classes is 7). */
  hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_TRUE(f >= 0);
  hid_t d = H5Dopen2(f, "labels", H5P_DEFAULT);
  hid_t fs = H5Dget_space(d);
  hsize_t start = 17, cnt = 1;
  H5Sselect_hyperslab(fs, H5S_SELECT_SET, &start, NULL, &cnt, NULL);
  hid_t ms = H5Screate_simple(1, &cnt, NULL);
  int32_t v = 7;
  herr_t e = H5Dwrite(d, H5T_NATIVE_INT32, ms, fs, H5P_DEFAULT, &v);
  H5Sclose(ms);
  H5Sclose(fs);
  H5Dclose(d);
  H5Fclose(f);
  ASSERT_TRUE(e >= 0);
  ASSERT_EQ_INT(open_fail("badlab.h5", &err), NN_EDATA);
  ASSERT_STR_CONTAINS(err.file, "badlab.h5");
  ASSERT_STR_CONTAINS(err.msg, "row 17");
  ASSERT_STR_CONTAINS(err.msg, "label 7");

  /* The writer refuses such a label in the first place. */
  nn_shard_writer *w = NULL;
  double mean[2] = {0, 0}, sd[2] = {1, 1};
  nn_shard_meta m = {sp.sample, NN_FEAT_U8, 7, 0, 1.0, 2, mean, sd, "train", "t", 0, 1, 0, 0, 0, 0};
  path_in(p, sizeof p, "badlab2.h5");
  ASSERT_OK(nn_shard_create(&w, p, &m, &err));
  uint8_t x[2 * 30] = {0};
  int32_t lab[2] = {3, -1};
  int rc = nn_shard_append(w, x, lab, NULL, 2, &err);
  nn_shard_abort(w);
  ASSERT_EQ_INT(rc, NN_EDATA);
  ASSERT_STR_CONTAINS(err.msg, "sample 1");
  char tmp[600];
  snprintf(tmp, sizeof tmp, "%s.tmp", p);
  ASSERT_TRUE(access(tmp, F_OK) != 0); /* abort removed the temporary */
  ASSERT_TRUE(access(p, F_OK) != 0);
}

/* A shard whose /features is contiguous (as h5py writes by default) is read
 * through HDF5's own path; results must equal the chunked original. */
static void test_contiguous_features(void) {
  nn_error err;
  nn_error_clear(&err);
  spec sp = {{1, {6}}, NN_FEAT_F32, 3, 0, 0.25, 0.0, 1};
  char p[512], q[512];
  path_in(p, sizeof p, "chunked.h5");
  path_in(q, sizeof q, "contig.h5");
  ASSERT_OK(write_shard(p, &sp, 0, 0, 2100, &err));
  ASSERT_OK(write_shard(q, &sp, 0, 0, 2100, &err));
  /* Replace contig.h5's /features by a contiguous copy. */
  hid_t f = H5Fopen(q, H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_TRUE(f >= 0);
  float *all = malloc(sizeof(float) * 2100 * 6);
  hid_t d = H5Dopen2(f, "features", H5P_DEFAULT);
  herr_t e1 = H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, all);
  H5Dclose(d);
  herr_t e2 = H5Ldelete(f, "features", H5P_DEFAULT);
  hsize_t dims[2] = {2100, 6};
  hid_t sp2 = H5Screate_simple(2, dims, NULL);
  d = H5Dcreate2(f, "features", H5T_IEEE_F32LE, sp2, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  herr_t e3 = H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, all);
  H5Dclose(d);
  H5Sclose(sp2);
  H5Fclose(f);
  free(all);
  ASSERT_TRUE(e1 >= 0 && e2 >= 0 && e3 >= 0);
  nn_dataset *a = NULL, *b = NULL;
  ASSERT_OK(nn_dataset_open(&a, p, NULL, &err));
  int rc = nn_dataset_open(&b, q, NULL, &err);
  enum { N = 200 };
  int64_t idx[N];
  for (int i = 0; i < N; i++) idx[i] = (i * 997 + 5) % 2100;
  idx[10] = idx[11] = 2099;
  idx[12] = 2098;
  float xa[N * 6], xb[N * 6];
  int32_t la[N], lb[N];
  int ra = rc ? rc : nn_dataset_read(a, idx, N, xa, la, NULL, &err);
  int rb = rc ? rc : nn_dataset_read(b, idx, N, xb, lb, NULL, &err);
  nn_dataset_close(a);
  nn_dataset_close(b);
  ASSERT_OK(rc);
  ASSERT_OK(ra);
  ASSERT_OK(rb);
  ASSERT_TRUE(check_rows(&sp, idx, N, xa, la, NULL));
  ASSERT_TRUE(!memcmp(xa, xb, sizeof xa));
  ASSERT_TRUE(!memcmp(la, lb, sizeof la));
  nn_shard_desc desc;
  ASSERT_OK(nn_shard_describe(q, &desc, &err));
  ASSERT_EQ_INT(desc.chunk_ndim, 0);
  ASSERT_EQ_INT(desc.deflate, -1);
}

/* A small chunk cache forces evictions; reads stay exact. */
static void test_small_chunk_cache(void) {
  nn_error err;
  nn_error_clear(&err);
  spec sp = {{1, {1000}}, NN_FEAT_U8, 5, 0, 1.0 / 255, 0.0, 1};
  char p[512];
  path_in(p, sizeof p, "evict.h5");
  ASSERT_OK(write_shard(p, &sp, 0, 0, 5000, &err)); /* chunks of 1024 rows, ~1 MB */
  nn_dataset_opts o = {0, 1 << 20};                 /* room for one chunk */
  nn_dataset *ds = NULL;
  ASSERT_OK(nn_dataset_open(&ds, p, &o, &err));
  enum { N = 64 };
  int64_t idx[N];
  float *x = malloc(sizeof(float) * N * 1000);
  int ok = 1, rc = 0;
  for (int rep = 0; rep < 5 && ok && !rc; rep++) {
    for (int i = 0; i < N; i++) idx[i] = (i * 2711 + rep * 613) % 5000;
    rc = nn_dataset_read(ds, idx, N, x, NULL, NULL, &err);
    ok = !rc && check_rows(&sp, idx, N, x, NULL, NULL);
  }
  free(x);
  nn_dataset_close(ds);
  ASSERT_OK(rc);
  ASSERT_TRUE(ok);
}

/* Memory stays bounded whatever the data set's size and shard count: one
 * cache budget for all shards. 6 shards x 3 chunks of ~1 MB, budget 3 MiB. */
static void test_cache_bounded_across_shards(void) {
  nn_error err;
  nn_error_clear(&err);
  spec sp = {{1, {1000}}, NN_FEAT_U8, 5, 0, 1.0 / 255, 0.0, 6};
  int64_t sizes[6] = {2500, 2500, 2500, 2500, 2500, 2500};
  ASSERT_OK(write_set("bounded", &sp, sizes, 6, &err));
  char p[512];
  path_in(p, sizeof p, "bounded-*.h5");
  const size_t budget = (size_t)3 << 20;
  nn_dataset_opts o = {0, budget};
  nn_dataset *ds = NULL;
  ASSERT_OK(nn_dataset_open(&ds, p, &o, &err));
  enum { N = 128, TOTAL = 15000 };
  int64_t *perm = malloc(sizeof(int64_t) * TOTAL);
  float *x = malloc(sizeof(float) * N * 1000);
  for (int64_t i = 0; i < TOTAL; i++) perm[i] = i;
  for (int64_t i = TOTAL - 1; i > 0; i--) { /* a fixed shuffle */
    int64_t j = (i * 7919 + 13) % (i + 1), t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
  int ok = 1, rc = 0;
  size_t peak = 0;
  for (int64_t b = 0; b + N <= TOTAL && ok && !rc; b += N) {
    rc = nn_dataset_read(ds, perm + b, N, x, NULL, NULL, &err);
    ok = !rc && check_rows(&sp, perm + b, N, x, NULL, NULL);
    size_t c = nn_dataset_cached_bytes(ds);
    if (c > peak) peak = c;
  }
  free(perm);
  free(x);
  nn_dataset_close(ds);
  ASSERT_OK(rc);
  ASSERT_TRUE(ok);
  ASSERT_TRUE(peak > budget / 2); /* the cache was used ... */
  ASSERT_TRUE(peak <= budget);    /* ... and never grew past its budget */
}

static void test_describe_and_format(void) {
  nn_error err;
  nn_error_clear(&err);
  spec sp = spec_u8();
  sp.shard_count = 1;
  char p[512];
  path_in(p, sizeof p, "desc.h5");
  ASSERT_OK(write_shard(p, &sp, 0, 0, 2000, &err));
  char fmt[64];
  ASSERT_OK(nn_h5_format(p, fmt, sizeof fmt, &err));
  ASSERT_STR_EQ(fmt, NN_SHARD_FORMAT);
  nn_shard_desc d;
  ASSERT_OK(nn_shard_describe(p, &d, &err));
  ASSERT_EQ_INT(d.version, 1);
  ASSERT_STR_EQ(d.split, "train");
  ASSERT_STR_EQ(d.source, "test_dataset");
  ASSERT_EQ_INT(d.n, 2000);
  ASSERT_EQ_INT(d.chunk_ndim, 4);
  ASSERT_EQ_INT(d.chunk[0], 1024);
  ASSERT_EQ_INT(d.chunk[3], 5);
  ASSERT_EQ_INT(d.deflate, 4);
  ASSERT_EQ_INT(d.shuffle, 1);
  ASSERT_EQ_INT(d.raw_bytes, 2000 * 30);
  ASSERT_TRUE(d.stored_bytes > 0 && d.stored_bytes < d.raw_bytes);
}

static void test_stats(void) {
  nn_error err;
  nn_error_clear(&err);
  /* [2, 1, 2] u8 samples: channel 0 = {0, 255, 0, 255}, channel 1 = {10, 10, 20, 20} */
  uint8_t x[8] = {0, 255, 10, 10, 0, 255, 20, 20};
  nn_shape s = {3, {2, 1, 2}};
  int C = 0;
  double mean[NN_SHARD_MAX_CHANNELS], sd[NN_SHARD_MAX_CHANNELS];
  ASSERT_OK(nn_shard_stats(x, NN_FEAT_U8, 2, &s, 1.0 / 255, &C, mean, sd, &err));
  ASSERT_EQ_INT(C, 2);
  ASSERT_NEAR(mean[0], 0.5, 1e-12);
  ASSERT_NEAR(sd[0], 0.5, 1e-12);
  ASSERT_NEAR(mean[1], 15.0 / 255, 1e-12);
  ASSERT_NEAR(sd[1], 5.0 / 255, 1e-12);
  /* float features [3]: per-feature stats */
  float f[6] = {1, 2, 3, 3, 2, 1};
  nn_shape s2 = {1, {3}};
  ASSERT_OK(nn_shard_stats(f, NN_FEAT_F32, 2, &s2, 2.0, &C, mean, sd, &err));
  ASSERT_EQ_INT(C, 3);
  ASSERT_NEAR(mean[0], 4.0, 1e-12);
  ASSERT_NEAR(sd[0], 2.0, 1e-12);
  ASSERT_NEAR(mean[1], 4.0, 1e-12);
  ASSERT_NEAR(sd[1], 0.0, 1e-12);
  nn_shape big = {1, {NN_SHARD_MAX_CHANNELS + 1}};
  ASSERT_EQ_INT(nn_shard_stats(f, NN_FEAT_F32, 1, &big, 1.0, &C, mean, sd, &err), NN_EINVAL);
}

static double clock_s(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
static double now_s(void) { return clock_s(CLOCK_MONOTONIC); }
static double cpu_s(void) { return clock_s(CLOCK_PROCESS_CPUTIME_ID); }

/* Throughput of random-order 128-sample batches, cache off and on, over the
 * shards matching $NN_DATASET_BENCH (e.g. DIR/train-*.h5 from `nntrain
 * prepare fashion-mnist`); also checks both modes return the same data.
 * Without the variable this only checks a small synthetic set. */
static void test_bench_random_batches(void) {
  nn_error err;
  nn_error_clear(&err);
  const char *pat = getenv("NN_DATASET_BENCH");
  char own[512];
  if (!pat) {
    spec sp = spec_u8();
    sp.shard_count = 1;
    path_in(own, sizeof own, "bench-000.h5");
    ASSERT_OK(write_shard(own, &sp, 0, 0, 5000, &err));
    pat = own;
  }
  enum { B = 128 };
  nn_dataset *ds[2] = {NULL, NULL};
  double rate[2] = {0, 0};
  int64_t idx[B];
  float *x[2] = {NULL, NULL};
  int same = 1, rc = 0;
  for (int cache = 0; cache <= 1 && !rc; cache++) {
    nn_dataset_opts o = {cache, 0};
    double t0 = now_s();
    rc = nn_dataset_open(&ds[cache], pat, &o, &err);
    if (rc) break;
    double topen = now_s() - t0;
    const nn_dataset_info *info = nn_dataset_get_info(ds[cache]);
    size_t rowlen = 1;
    for (int i = 0; i < info->sample.ndim; i++) rowlen *= (size_t)info->sample.dim[i];
    x[cache] = malloc(sizeof(float) * B * rowlen);
    /* a permutation of all samples, read in batches (one epoch, capped) */
    int64_t n = info->n, nb = n / B > 500 ? 500 : n / B;
    uint64_t st = 99;
    int64_t *perm = malloc(sizeof *perm * (size_t)n);
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
      st = st * 6364136223846793005ULL + 1442695040888963407ULL;
      int64_t j = (int64_t)((st >> 33) % (uint64_t)(i + 1));
      int64_t t = perm[i];
      perm[i] = perm[j];
      perm[j] = t;
    }
    int32_t lab[B];
    /* Two passes: the first decodes every chunk once, the second is steady state. */
    for (int pass = 0; pass < 2 && !rc; pass++) {
      t0 = now_s();
      double c0 = cpu_s();
      for (int64_t b = 0; b < nb && !rc; b++)
        rc = nn_dataset_read(ds[cache], perm + b * B, B, x[cache], lab, NULL, &err);
      double dt = now_s() - t0, dc = cpu_s() - c0;
      rate[cache] = (double)(nb * B) / dt;
      printf("bench %s: cache=%d (open %.3f s) pass %d: %lld random batches of %d: %.0f "
             "samples/s wall, %.0f samples per CPU-second\n",
             pat, cache, topen, pass + 1, (long long)nb, B, rate[cache], (double)(nb * B) / dc);
    }
    memcpy(idx, perm + (nb - 1) * B, sizeof idx);
    free(perm);
  }
  if (!rc) {
    /* The last batch again through the other mode: identical floats. */
    const nn_dataset_info *info = nn_dataset_get_info(ds[0]);
    size_t rowlen = 1;
    for (int i = 0; i < info->sample.ndim; i++) rowlen *= (size_t)info->sample.dim[i];
    rc = nn_dataset_read(ds[0], idx, B, x[0], NULL, NULL, &err);
    if (!rc) same = !memcmp(x[0], x[1], sizeof(float) * B * rowlen);
  }
  for (int c = 0; c < 2; c++) {
    nn_dataset_close(ds[c]);
    free(x[c]);
  }
  ASSERT_OK(rc);
  ASSERT_TRUE(same);
  ASSERT_TRUE(rate[0] > 0 && rate[1] > 0);
}

/* ---- sequence shards (vocab_size, /lengths) ------------------------------------ */

/* Overwrite one int32 element of 1-d or 2-d dataset `name` of file p. */
static int poke_i32(const char *p, const char *name, hsize_t row, hsize_t col, int32_t v) {
  hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
  if (f < 0) return -1;
  hid_t d = H5Dopen2(f, name, H5P_DEFAULT), fs = H5Dget_space(d);
  int rank = H5Sget_simple_extent_ndims(fs);
  hsize_t start[2] = {row, col}, cnt[2] = {1, 1};
  H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, cnt, NULL);
  hid_t ms = H5Screate_simple(rank, cnt, NULL);
  herr_t e = H5Dwrite(d, H5T_NATIVE_INT32, ms, fs, H5P_DEFAULT, &v);
  H5Sclose(ms);
  H5Sclose(fs);
  H5Dclose(d);
  H5Fclose(f);
  return e < 0 ? -1 : 0;
}

/* A sequence shard of 40 samples [T = 6], vocab 9: sample i has length
 * 1 + i % 6 and ids 1 + (i + t) % 8, class i % 3. */
static int write_seq(const char *p, nn_error *err) {
  enum { N = 40, T = 6 };
  double mean[T] = {0}, sd[T] = {1, 1, 1, 1, 1, 1};
  nn_shard_meta m = {{1, {T}}, NN_FEAT_I32, 3, 0, 1.0, T, mean, sd, "train", "t", 0, 1, 9, 0, 0, 0};
  int32_t ids[N * T] = {0}, len[N], lab[N];
  for (int i = 0; i < N; i++) {
    len[i] = 1 + i % T;
    lab[i] = i % 3;
    for (int t = 0; t < len[i]; t++) ids[i * T + t] = 1 + (i + t) % 8;
  }
  nn_shard_writer *w = NULL;
  int rc = nn_shard_create(&w, p, &m, err);
  if (rc) return rc;
  if ((rc = nn_shard_append_seq(w, ids, len, lab, NULL, N, err))) {
    nn_shard_abort(w);
    return rc;
  }
  return nn_shard_close(w, err);
}

static void test_sequence_shard(void) {
  nn_error err;
  nn_error_clear(&err);
  char p[512];
  path_in(p, sizeof p, "seq.h5");
  ASSERT_OK(write_seq(p, &err));
  nn_dataset *ds = NULL;
  ASSERT_OK(nn_dataset_open(&ds, p, NULL, &err));
  const nn_dataset_info *info = nn_dataset_get_info(ds);
  ASSERT_EQ_INT(info->vocab_size, 9);
  ASSERT_EQ_INT(info->ftype, NN_FEAT_I32);
  const int32_t *len = nn_dataset_lengths(ds);
  ASSERT_TRUE(len != NULL);
  int64_t idx[3] = {37, 0, 37};
  float x[3 * 6];
  int32_t lab[3];
  ASSERT_OK(nn_dataset_read(ds, idx, 3, x, lab, NULL, &err));
  for (int j = 0; j < 3; j++) {
    int i = (int)idx[j];
    ASSERT_EQ_INT(len[i], 1 + i % 6);
    ASSERT_EQ_INT(lab[j], i % 3);
    for (int t = 0; t < 6; t++)
      ASSERT_TRUE(x[j * 6 + t] == (t < len[i] ? (float)(1 + (i + t) % 8) : 0.0f));
  }
  nn_dataset_close(ds);

  /* an id outside the vocabulary, behind the writer's back: read refuses it */
  ASSERT_EQ_INT(poke_i32(p, "features", 5, 2, 9), 0);
  ASSERT_OK(nn_dataset_open(&ds, p, NULL, &err));
  int64_t five = 5;
  ASSERT_EQ_INT(nn_dataset_read(ds, &five, 1, x, lab, NULL, &err), NN_EDATA);
  ASSERT_STR_CONTAINS(err.file, "seq.h5");
  ASSERT_STR_CONTAINS(err.msg, "row 5 element 2 is token id 9");
  nn_dataset_close(ds);
  /* a length outside [1, T]: open refuses it */
  ASSERT_OK(write_seq(p, &err));
  ASSERT_EQ_INT(poke_i32(p, "lengths", 11, 0, 7), 0);
  ASSERT_EQ_INT(nn_dataset_open(&ds, p, NULL, &err), NN_EDATA);
  ASSERT_STR_CONTAINS(err.msg, "/lengths row 11 is 7");

  /* the writer refuses bad lengths, ids and padding */
  double mean[6] = {0}, sd[6] = {1, 1, 1, 1, 1, 1};
  nn_shard_meta m = {{1, {6}}, NN_FEAT_I32, 3, 0, 1.0, 6, mean, sd, "train", "t", 0, 1, 9, 0, 0, 0};
  struct { int32_t len, id0, id5; const char *msg; } bad[] = {
      {0, 1, 0, "length 0 is outside [1, 6]"},
      {7, 1, 0, "length 7 is outside [1, 6]"},
      {3, 9, 0, "step 0: token id 9"},
      {3, -1, 0, "step 0: token id -1"},
      {3, 1, 4, "step 5: token id 4"}, /* padding must be 0 */
  };
  for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
    nn_shard_writer *w = NULL;
    path_in(p, sizeof p, "seqbad.h5");
    ASSERT_OK(nn_shard_create(&w, p, &m, &err));
    int32_t ids[6] = {bad[k].id0, 1, 1, 0, 0, bad[k].id5}, l = bad[k].len, c = 0;
    int rc = nn_shard_append_seq(w, ids, &l, &c, NULL, 1, &err);
    nn_shard_abort(w);
    ASSERT_EQ_INT(rc, NN_EDATA);
    ASSERT_STR_CONTAINS(err.msg, bad[k].msg);
  }
  /* a sequence shard needs its lengths; vocab_size needs int32 [T] */
  nn_shard_writer *w = NULL;
  ASSERT_OK(nn_shard_create(&w, p, &m, &err));
  int32_t ids[6] = {1}, c = 0;
  ASSERT_EQ_INT(nn_shard_append(w, ids, &c, NULL, 1, &err), NN_EINVAL);
  nn_shard_abort(w);
  m.ftype = NN_FEAT_F32;
  ASSERT_EQ_INT(nn_shard_create(&w, p, &m, &err), NN_EINVAL);
}

/* Token streams (loader cfg.bptt): windows of every stream, the next token
 * as target, the same tokens whatever the rank count, carry_in after window 0. */
static void test_stream_loader(void) {
  enum { R = 8, L = 100, B = 6, BPTT = 5 };
  nn_error err;
  nn_error_clear(&err);
  char p[512];
  path_in(p, sizeof p, "stream.h5");
  int32_t tok[L], ids[13 * R] = {0}, len[13];
  for (int i = 0; i < L; i++) tok[i] = 1 + (i * 7) % 200;
  for (int r = 0; r < 13; r++) {
    len[r] = r < 12 ? R : L - 12 * R;
    for (int t = 0; t < len[r]; t++) ids[r * R + t] = tok[r * R + t];
  }
  double mean[R] = {0}, sd[R] = {1, 1, 1, 1, 1, 1, 1, 1};
  nn_shard_meta m = {{1, {R}}, NN_FEAT_I32, 0, 0, 1.0, R, mean, sd, "train", "t", 0, 1, 257, 1, 0, 0};
  nn_shard_writer *w = NULL;
  ASSERT_OK(nn_shard_create(&w, p, &m, &err));
  ASSERT_OK(nn_shard_append_seq(w, ids, len, NULL, NULL, 13, &err));
  ASSERT_OK(nn_shard_close(w, &err));
  nn_dataset *ds = NULL;
  ASSERT_OK(nn_dataset_open(&ds, p, NULL, &err));
  ASSERT_EQ_INT(nn_dataset_get_info(ds)->stream, 1);
  const int Ls = L / B; /* 16 tokens per stream: (16 - 1) / 5 = 3 windows */
  for (int N = 1; N <= 3; N += 2) {
    for (int r = 0; r < N; r++) {
      nn_loader_cfg c = {.seed = 1, .rank = r, .nranks = N, .batch_size = B, .prefetch = 2,
                         .bptt = BPTT};
      nn_loader *ld = NULL;
      ASSERT_OK(nn_loader_create(&ld, ds, &c, &err));
      ASSERT_EQ_INT(nn_loader_steps(ld), 3);
      ASSERT_OK(nn_loader_start(ld, 0, 0, &err));
      const nn_batch *b;
      for (int k = 0; k < 3; k++) {
        ASSERT_OK(nn_loader_next(ld, &b, &err));
        ASSERT_TRUE(b != NULL);
        ASSERT_EQ_INT(b->global_n, B);
        ASSERT_EQ_INT(b->carry_in, k > 0);
        ASSERT_EQ_INT(b->sample0, B * r / N);
        ASSERT_EQ_INT(b->n, B * (r + 1) / N - B * r / N);
        for (int i = 0; i < b->n; i++)
          for (int t = 0; t < BPTT; t++) {
            int at = (int)(b->sample0 + i) * Ls + k * BPTT + t;
            ASSERT_TRUE(b->x[i * BPTT + t] == (float)tok[at]);
            ASSERT_EQ_INT(b->tlabels[i * BPTT + t], tok[at + 1]);
          }
      }
      ASSERT_OK(nn_loader_next(ld, &b, &err));
      ASSERT_TRUE(b == NULL);
      nn_loader_free(ld);
    }
  }
  /* a stream needs bptt, bptt needs a stream */
  nn_loader_cfg c = {.seed = 1, .rank = 0, .nranks = 1, .batch_size = B, .prefetch = 1};
  nn_loader *ld = NULL;
  ASSERT_EQ_INT(nn_loader_create(&ld, ds, &c, &err), NN_ESCHEMA);
  ASSERT_STR_CONTAINS(err.msg, "needs train.bptt");
  c.bptt = 40; /* longer than a stream */
  ASSERT_EQ_INT(nn_loader_create(&ld, ds, &c, &err), NN_EDATA);
  nn_dataset_close(ds);
}

/* A class per timestep (taggers): labels [N, T] round trip (padding labels
 * are not checked: -1 here), the writer refuses a bad label before a length. */
static void test_token_labels(void) {
  enum { N = 5, T = 4 };
  nn_error err;
  nn_error_clear(&err);
  char p[512];
  path_in(p, sizeof p, "tags.h5");
  double mean[T] = {0}, sd[T] = {1, 1, 1, 1};
  nn_shard_meta m = {{1, {T}}, NN_FEAT_I32, 3, 0, 1.0, T, mean, sd, "train", "t", 0, 1, 9, 0, 1, 0};
  int32_t ids[N * T] = {0}, len[N], lab[N * T];
  for (int i = 0; i < N; i++) {
    len[i] = 1 + i % T;
    for (int t = 0; t < T; t++) {
      ids[i * T + t] = t < len[i] ? 1 + (i + t) % 8 : 0;
      lab[i * T + t] = t < len[i] ? (i * 3 + t) % 3 : -1;
    }
  }
  nn_shard_writer *w = NULL;
  ASSERT_OK(nn_shard_create(&w, p, &m, &err));
  ASSERT_OK(nn_shard_append_seq(w, ids, len, lab, NULL, N, &err));
  ASSERT_OK(nn_shard_close(w, &err));
  nn_dataset *ds = NULL;
  ASSERT_OK(nn_dataset_open(&ds, p, NULL, &err));
  ASSERT_EQ_INT(nn_dataset_get_info(ds)->token_labels, 1);
  int64_t idx[2] = {3, 1};
  float x[2 * T];
  int32_t got[2 * T];
  ASSERT_OK(nn_dataset_read(ds, idx, 2, x, got, NULL, &err));
  for (int j = 0; j < 2; j++)
    for (int t = 0; t < T; t++) ASSERT_EQ_INT(got[j * T + t], lab[idx[j] * T + t]);
  nn_dataset_close(ds);
  /* a label outside [0, 3) before the sample's length is refused */
  lab[2 * T + 1] = 3;
  path_in(p, sizeof p, "tagsbad.h5");
  ASSERT_OK(nn_shard_create(&w, p, &m, &err));
  ASSERT_EQ_INT(nn_shard_append_seq(w, ids, len, lab, NULL, N, &err), NN_EDATA);
  nn_shard_abort(w);
  ASSERT_STR_CONTAINS(err.msg, "sample 2 step 1: label 3");
}

/* Write a multi-label shard `name` of N samples [4] and K labels (0/1 from
 * lab), shard i of count. */
enum { ML_N = 6, ML_K = 3 };
static int write_ml(const char *name, const float *lab, int multilabel, int index, int count,
                    nn_error *err) {
  char p[512];
  path_in(p, sizeof p, name);
  double mean[4] = {0}, sd[4] = {1, 1, 1, 1};
  nn_shard_meta m = {{1, {4}}, NN_FEAT_F32, 0, ML_K, 1.0, 4, mean, sd, "train", "t", index,
                     count, 0, 0, 0, multilabel};
  float x[ML_N * 4];
  for (int i = 0; i < ML_N * 4; i++) x[i] = val_f32(i / 4, (size_t)(i % 4));
  nn_shard_writer *w = NULL;
  int rc = nn_shard_create(&w, p, &m, err);
  if (!rc && (rc = nn_shard_append(w, x, NULL, lab, ML_N, err)) != 0) nn_shard_abort(w);
  if (!rc) rc = nn_shard_close(w, err);
  return rc;
}

/* Overwrite /targets of `name` with a [ML_N, ML_K] dataset of type t from buf. */
static void rewrite_targets(const char *name, hid_t t, const void *buf) {
  char p[512];
  path_in(p, sizeof p, name);
  hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_TRUE(f >= 0);
  ASSERT_TRUE(H5Ldelete(f, "targets", H5P_DEFAULT) >= 0);
  hsize_t dims[2] = {ML_N, ML_K};
  hid_t sp = H5Screate_simple(2, dims, NULL);
  hid_t d = H5Dcreate2(f, "targets", t, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  herr_t e = H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
  H5Dclose(d);
  H5Sclose(sp);
  H5Fclose(f);
  ASSERT_TRUE(e >= 0);
}

/* Multi-label shards: attribute multi_label, /targets [N, K] of 0/1 as
 * float32 (the writer) or uint8 (as h5py writes a bool/uint8 array); the
 * writer and the reader refuse anything but 0/1, naming the row and label. */
static void test_multilabel_shard(void) {
  nn_error err;
  nn_error_clear(&err);
  float lab[ML_N * ML_K];
  for (int i = 0; i < ML_N * ML_K; i++) lab[i] = (float)((i * 5 + i / 3) % 2);
  ASSERT_OK(write_ml("ml-000.h5", lab, 1, 0, 1, &err));
  char p[512];
  path_in(p, sizeof p, "ml-000.h5");
  nn_dataset *ds = NULL;
  ASSERT_OK(nn_dataset_open(&ds, p, NULL, &err));
  const nn_dataset_info *di = nn_dataset_get_info(ds);
  ASSERT_EQ_INT(di->multilabel, 1);
  ASSERT_EQ_INT(di->num_classes, 0);
  ASSERT_EQ_INT(di->target_dim, ML_K);
  int64_t idx[3] = {5, 0, 2};
  float x[3 * 4], got[3 * ML_K];
  ASSERT_OK(nn_dataset_read(ds, idx, 3, x, NULL, got, &err));
  for (int j = 0; j < 3; j++)
    for (int k = 0; k < ML_K; k++) ASSERT_NEAR(got[j * ML_K + k], lab[idx[j] * ML_K + k], 0);
  nn_dataset_close(ds);

  /* uint8 targets read as the same 0/1 floats */
  uint8_t u8[ML_N * ML_K];
  for (int i = 0; i < ML_N * ML_K; i++) u8[i] = (uint8_t)lab[i];
  rewrite_targets("ml-000.h5", H5T_NATIVE_UINT8, u8);
  ASSERT_OK(nn_dataset_open(&ds, p, NULL, &err));
  ASSERT_OK(nn_dataset_read(ds, idx, 3, x, NULL, got, &err));
  for (int j = 0; j < 3; j++)
    for (int k = 0; k < ML_K; k++) ASSERT_NEAR(got[j * ML_K + k], lab[idx[j] * ML_K + k], 0);
  nn_dataset_close(ds);

  /* a 2 in row 4, label 1: refused at open */
  u8[4 * ML_K + 1] = 2;
  rewrite_targets("ml-000.h5", H5T_NATIVE_UINT8, u8);
  ASSERT_EQ_INT(open_fail("ml-000.h5", &err), NN_EDATA);
  ASSERT_STR_CONTAINS(err.file, "ml-000.h5");
  ASSERT_STR_CONTAINS(err.msg, "/targets row 4 label 1: value 2, expected 0 or 1");

  /* the writer refuses 0.5 */
  lab[1 * ML_K + 2] = 0.5f;
  ASSERT_EQ_INT(write_ml("mlbad.h5", lab, 1, 0, 1, &err), NN_EDATA);
  ASSERT_STR_CONTAINS(err.msg, "sample 1: label 2 is 0.5, expected 0 or 1");
  lab[1 * ML_K + 2] = 1;

  /* a multi-label shard and a regression shard of the same shape do not mix */
  ASSERT_OK(write_ml("mlmix-000.h5", lab, 1, 0, 2, &err));
  ASSERT_OK(write_ml("mlmix-001.h5", lab, 0, 1, 2, &err));
  ASSERT_EQ_INT(open_fail("mlmix-*.h5", &err), NN_EDATA);
  ASSERT_STR_CONTAINS(err.msg, "attribute 'multi_label' 0 differs from 1");

  /* multi_label on a classification shard is refused */
  spec sp = spec_u8();
  sp.shard_count = 1;
  path_in(p, sizeof p, "mlcls.h5");
  ASSERT_OK(write_shard(p, &sp, 0, 0, 10, &err));
  hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
  hid_t as = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(f, "multi_label", H5T_NATIVE_INT32, as, H5P_DEFAULT, H5P_DEFAULT);
  int32_t one = 1;
  ASSERT_TRUE(H5Awrite(a, H5T_NATIVE_INT32, &one) >= 0);
  H5Aclose(a);
  H5Sclose(as);
  H5Fclose(f);
  ASSERT_EQ_INT(open_fail("mlcls.h5", &err), NN_EDATA);
  ASSERT_STR_CONTAINS(err.msg, "attribute 'multi_label' is 1");
}

TEST_MAIN(TEST(test_multilabel_shard), TEST(test_u8_multishard_random), TEST(test_cache_bounded_across_shards), TEST(test_f32_regression),
          TEST(test_mismatched_shards), TEST(test_not_hdf5_truncated_missing),
          TEST(test_not_a_shard), TEST(test_label_out_of_range), TEST(test_contiguous_features),
          TEST(test_small_chunk_cache), TEST(test_describe_and_format),
          TEST(test_stats), TEST(test_bench_random_batches), TEST(test_sequence_shard),
          TEST(test_stream_loader), TEST(test_token_labels))
