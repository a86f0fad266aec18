/* conv2d_dnnl.c: conv2d's oneDNN backend (conv2d_dnnl.h says what and why).
 *
 * One cache entry per slice size n holds three convolution primitives
 * (forward, backward-data, backward-weights) and, for each tensor a
 * primitive reads or writes, an "edge": our memory object (plain layout,
 * its data handle set to the caller's buffer on every call) and, when the
 * primitive wants another layout, its own memory object in the arena plus
 * the reorder between the two.
 *
 * Arena regions of an entry (offsets per entry, the arena sized to the
 * largest entry; every region 64-byte aligned):
 *   A   src-sized: x reordered (forward; backward-weights), dx before its
 *       reorder out (backward-data, which runs first in backward)
 *   B   dst-sized: y before its reorder out, dy reordered
 *   W   the weights reordered (forward; backward-data)
 *   DW  the weight gradient as backward-weights writes it
 *   DB  the bias gradient [F]
 *   S   the scratchpad, the largest any primitive or reorder asks for
 * Backward runs backward-data first, then backward-weights, so the weight
 * and bias gradients are added only after everything else succeeded. */
#ifdef NN_HAVE_DNNL

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>

#include "core/layers/conv2d_dnnl.h"
#include "core/mem.h"

enum { R_A, R_B, R_W, R_DW, R_DB, R_S, R_COUNT };
#define DN__ALIGN 64

/* A primitive and its scratchpad memory object (NULL: needs none). */
typedef struct dn_prim {
  dnnl_primitive_t p;
  dnnl_memory_t pad;
} dn_prim;

/* One tensor of one primitive: `user` in our layout (the caller's buffer),
 * `inner` in the primitive's (== user when they agree and nothing is
 * accumulated); `move` reorders user -> inner (inputs) or inner -> user
 * (outputs; with a sum post-op when accumulating). */
typedef struct dn_edge {
  dnnl_memory_t user, inner;
  dn_prim move;   /* .p NULL: no reorder */
  int region;     /* R_* of inner when move.p */
} dn_edge;

typedef struct dn_entry {
  int n;          /* slice size, 0: empty */
  int failed;     /* creation failed for this n: the caller uses the reference */
  uint64_t used;  /* last use (LRU) */
  dn_prim fwd, bwd_d, bwd_w;
  dn_edge x, w, y;          /* forward: src, weights, dst */
  dn_edge dy_d, w_d, dx;    /* backward-data: diff_dst, weights, diff_src */
  dn_edge x_w, dy_w, dw;    /* backward-weights: src, diff_dst, diff_weights (accumulates) */
  int dy_shared;            /* dy_w.inner is dy_d.inner's layout: reorder dy once */
  dnnl_memory_t b, db;      /* bias (the caller's), bias gradient (region DB) */
  size_t off[R_COUNT];      /* byte offsets of the regions in the arena */
  size_t bytes;             /* arena bytes this entry needs */
} dn_entry;

struct nn__conv_dnnl {
  nn__conv_dims d;
  int blocked;
  int bf16;                 /* src, weights, diff_dst in bf16 (conv2d_dnnl.h) */
  int in_blk, out_blk;      /* x/dx, y/dy are ours in nChw16c, not NCHW (set_layouts) */
  dnnl_engine_t engine;
  dnnl_stream_t stream;
  dn_entry cache[NN__CONV_DNNL_CACHE];
  uint64_t clock;
  void *arena_raw;          /* allocation; arena is it aligned to DN__ALIGN */
  char *arena;
  size_t arena_bytes;
  char why[256];            /* the last creation failure */
};

/* ---- building blocks --------------------------------------------------------- */

/* Record a failed oneDNN call in c->why; returns NN_EINTERNAL. */
static int dn_fail(nn__conv_dnnl *c, const char *what, dnnl_status_t s) {
  snprintf(c->why, sizeof c->why, "oneDNN %s: %s", what, dnnl_status2str(s));
  return NN_EINTERNAL;
}

#define DN(call)                                                          \
  do {                                                                    \
    dnnl_status_t s_ = (call);                                            \
    if (s_ != dnnl_success) {                                             \
      rc = dn_fail(c, #call, s_);                                         \
      goto done;                                                          \
    }                                                                     \
  } while (0)

static void prim_free(dn_prim *p) {
  if (p->p) dnnl_primitive_destroy(p->p);
  if (p->pad) dnnl_memory_destroy(p->pad);
  p->p = NULL;
  p->pad = NULL;
}

static void edge_free(dn_edge *e) {
  if (e->inner && e->inner != e->user) dnnl_memory_destroy(e->inner);
  if (e->user) dnnl_memory_destroy(e->user);
  prim_free(&e->move);
  memset(e, 0, sizeof *e);
}

static void entry_free(dn_entry *e) {
  prim_free(&e->fwd);
  prim_free(&e->bwd_d);
  prim_free(&e->bwd_w);
  dn_edge *edges[] = {&e->x, &e->w, &e->y, &e->dy_d, &e->w_d, &e->dx, &e->x_w, &e->dy_w, &e->dw};
  for (size_t i = 0; i < sizeof edges / sizeof *edges; i++) edge_free(edges[i]);
  if (e->b) dnnl_memory_destroy(e->b);
  if (e->db) dnnl_memory_destroy(e->db);
  memset(e, 0, sizeof *e);
}

static size_t round_up(size_t v) { return (v + DN__ALIGN - 1) / DN__ALIGN * DN__ALIGN; }

/* Scratchpad mode "user" (and a sum post-op when `sum`) into *attr. */
static int attr_new(nn__conv_dnnl *c, int sum, dnnl_primitive_attr_t *attr) {
  int rc = 0;
  dnnl_post_ops_t po = NULL;
  DN(dnnl_primitive_attr_create(attr));
  DN(dnnl_primitive_attr_set_scratchpad_mode(*attr, dnnl_scratchpad_mode_user));
  if (sum) {
    DN(dnnl_post_ops_create(&po));
    DN(dnnl_post_ops_append_sum(po, 1.0f));
    DN(dnnl_primitive_attr_set_post_ops(*attr, po));
  }
done:
  if (po) dnnl_post_ops_destroy(po);
  return rc;
}

/* p from pd (which this takes over and destroys): the primitive and its
 * scratchpad memory; *pad_bytes = max(*pad_bytes, its scratchpad). */
static int prim_new(nn__conv_dnnl *c, dnnl_primitive_desc_t pd, dn_prim *p, size_t *pad_bytes) {
  int rc = 0;
  const dnnl_memory_desc_t *sp = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
  size_t spb = sp ? dnnl_memory_desc_get_size(sp) : 0;
  if (spb) {
    DN(dnnl_memory_create(&p->pad, sp, c->engine, DNNL_MEMORY_NONE));
    if (spb > *pad_bytes) *pad_bytes = spb;
  }
  DN(dnnl_primitive_create(&p->p, pd));
done:
  dnnl_primitive_desc_destroy(pd);
  return rc;
}

/* The edge of tensor `q` (index 0) of pd: our layout `user_md`, the
 * primitive's from pd. An input (`out` 0) is reordered in, an output out;
 * `sum`: the output is added into ours (always reordered). sizes[region] is
 * raised to the inner tensor's bytes when it needs a region. */
static int edge_new(nn__conv_dnnl *c, const_dnnl_primitive_desc_t pd, dnnl_query_t q,
                    const dnnl_memory_desc_t *user_md, int out, int sum, int region,
                    dn_edge *e, size_t *sizes) {
  int rc = 0;
  dnnl_primitive_attr_t attr = NULL;
  dnnl_primitive_desc_t rpd = NULL;
  const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, q, 0);
  if (!md) return dn_fail(c, "query of a primitive's memory", dnnl_invalid_arguments);
  DN(dnnl_memory_create(&e->user, user_md, c->engine, DNNL_MEMORY_NONE));
  if (!sum && dnnl_memory_desc_equal(md, user_md)) {
    e->inner = e->user;
    return 0;
  }
  DN(dnnl_memory_create(&e->inner, md, c->engine, DNNL_MEMORY_NONE));
  e->region = region;
  size_t bytes = dnnl_memory_desc_get_size(md);
  if (bytes > sizes[region]) sizes[region] = bytes;
  if ((rc = attr_new(c, sum, &attr)) != 0) goto done;
  if (out)
    DN(dnnl_reorder_primitive_desc_create(&rpd, md, c->engine, user_md, c->engine, attr));
  else
    DN(dnnl_reorder_primitive_desc_create(&rpd, user_md, c->engine, md, c->engine, attr));
  rc = prim_new(c, rpd, &e->move, &sizes[R_S]);
  rpd = NULL;
done:
  if (rpd) dnnl_primitive_desc_destroy(rpd);
  if (attr) dnnl_primitive_attr_destroy(attr);
  return rc;
}

/* ---- one entry: the primitives for slice size n --------------------------------- */

/* Memory descriptors of the problem: ours (`u_*`, always f32) and what the
 * primitives are asked for (`a_*`: ours when plain, "any" when blocked; in
 * bf16 the tensors the primitives read are bf16 (src, weights, diff_dst)
 * and the ones they write stay f32 (dst, diff_src, diff_weights, bias)). */
typedef struct dn_mds {
  dnnl_memory_desc_t u_src, u_wei, u_dst, bias;
  dnnl_memory_desc_t a_src, a_wei, a_dst;   /* read: src, weights; written: dst (f32) */
  dnnl_memory_desc_t a_dsrc, a_dwei, a_ddst; /* written: diff_src, diff_weights (f32); read: diff_dst */
  dnnl_dims_t strides, dil, pad_l, pad_r;
} dn_mds;

/* *md: dims in `tag` (format "any" when c->blocked) of type t. */
static int md_init(nn__conv_dnnl *c, dnnl_memory_desc_t *md, int nd, const dnnl_dims_t dims,
                   dnnl_data_type_t t, dnnl_format_tag_t tag) {
  int rc = 0;
  DN(dnnl_memory_desc_init_by_tag(md, nd, dims, t, c->blocked ? dnnl_format_tag_any : tag));
done:
  return rc;
}

static int mds_init(nn__conv_dnnl *c, int n, dn_mds *m) {
  const nn__conv_dims *d = &c->d;
  int rc = 0;
  dnnl_dims_t src = {n, d->c, d->h, d->w}, dst = {n, d->f, d->ho, d->wo}, bias = {d->f};
  dnnl_dims_t wei4 = {d->f, d->c, d->kh, d->kw};
  dnnl_dims_t wei5 = {d->groups, d->f / d->groups, d->c / d->groups, d->kh, d->kw};
  int g = d->groups > 1, wn = g ? 5 : 4;
  const dnnl_dim_t *wei = g ? wei5 : wei4;
  dnnl_format_tag_t wtag = g ? dnnl_goihw : dnnl_oihw;
  dnnl_data_type_t in = c->bf16 ? dnnl_bf16 : dnnl_f32; /* what the primitives read */
  DN(dnnl_memory_desc_init_by_tag(&m->u_src, 4, src, dnnl_f32,
                                  c->in_blk ? dnnl_nChw16c : dnnl_nchw));
  DN(dnnl_memory_desc_init_by_tag(&m->u_dst, 4, dst, dnnl_f32,
                                  c->out_blk ? dnnl_nChw16c : dnnl_nchw));
  DN(dnnl_memory_desc_init_by_tag(&m->u_wei, wn, wei, dnnl_f32, wtag));
  DN(dnnl_memory_desc_init_by_tag(&m->bias, 1, bias, dnnl_f32, dnnl_a));
  if ((rc = md_init(c, &m->a_src, 4, src, in, dnnl_nchw)) != 0) goto done;
  if ((rc = md_init(c, &m->a_wei, wn, wei, in, wtag)) != 0) goto done;
  if ((rc = md_init(c, &m->a_dst, 4, dst, dnnl_f32, dnnl_nchw)) != 0) goto done;
  if ((rc = md_init(c, &m->a_dsrc, 4, src, dnnl_f32, dnnl_nchw)) != 0) goto done;
  if ((rc = md_init(c, &m->a_dwei, wn, wei, dnnl_f32, wtag)) != 0) goto done;
  if ((rc = md_init(c, &m->a_ddst, 4, dst, in, dnnl_nchw)) != 0) goto done;
  m->strides[0] = d->sh;
  m->strides[1] = d->sw;
  m->dil[0] = d->dh - 1; /* oneDNN counts the gaps: 0 = none */
  m->dil[1] = d->dw - 1;
  m->pad_l[0] = d->pt;
  m->pad_l[1] = d->pl;
  m->pad_r[0] = d->pb;
  m->pad_r[1] = d->pr;
done:
  return rc;
}

/* The three convolution primitive descriptors into pds[0..2] (forward,
 * backward-data, backward-weights). */
static int pds_new(nn__conv_dnnl *c, const dn_mds *m, dnnl_primitive_desc_t pds[3]) {
  int rc = 0;
  dnnl_primitive_attr_t attr = NULL;
  dnnl_convolution_desc_t fd, bd, wd;
  const dnnl_memory_desc_t *bias = c->d.bias ? &m->bias : NULL;
  if ((rc = attr_new(c, 0, &attr)) != 0) goto done;
  DN(dnnl_dilated_convolution_forward_desc_init(&fd, dnnl_forward_training, dnnl_convolution_direct,
                                                &m->a_src, &m->a_wei, bias, &m->a_dst, m->strides,
                                                m->dil, m->pad_l, m->pad_r));
  DN(dnnl_primitive_desc_create(&pds[0], &fd, attr, c->engine, NULL));
  DN(dnnl_dilated_convolution_backward_data_desc_init(&bd, dnnl_convolution_direct, &m->a_dsrc,
                                                      &m->a_wei, &m->a_ddst, m->strides, m->dil,
                                                      m->pad_l, m->pad_r));
  DN(dnnl_primitive_desc_create(&pds[1], &bd, attr, c->engine, pds[0]));
  DN(dnnl_dilated_convolution_backward_weights_desc_init(&wd, dnnl_convolution_direct, &m->a_src,
                                                         &m->a_dwei, bias, &m->a_ddst, m->strides,
                                                         m->dil, m->pad_l, m->pad_r));
  DN(dnnl_primitive_desc_create(&pds[2], &wd, attr, c->engine, pds[0]));
done:
  if (attr) dnnl_primitive_attr_destroy(attr);
  return rc;
}

/* The edges of the three primitives (pds still owned by the caller). */
static int edges_new(nn__conv_dnnl *c, const dn_mds *m, dnnl_primitive_desc_t pds[3],
                     dn_entry *e, size_t *sz) {
  int rc = edge_new(c, pds[0], dnnl_query_src_md, &m->u_src, 0, 0, R_A, &e->x, sz);
  if (!rc) rc = edge_new(c, pds[0], dnnl_query_weights_md, &m->u_wei, 0, 0, R_W, &e->w, sz);
  if (!rc) rc = edge_new(c, pds[0], dnnl_query_dst_md, &m->u_dst, 1, 0, R_B, &e->y, sz);
  if (!rc) rc = edge_new(c, pds[1], dnnl_query_diff_dst_md, &m->u_dst, 0, 0, R_B, &e->dy_d, sz);
  if (!rc) rc = edge_new(c, pds[1], dnnl_query_weights_md, &m->u_wei, 0, 0, R_W, &e->w_d, sz);
  if (!rc) rc = edge_new(c, pds[1], dnnl_query_diff_src_md, &m->u_src, 1, 0, R_A, &e->dx, sz);
  if (!rc) rc = edge_new(c, pds[2], dnnl_query_src_md, &m->u_src, 0, 0, R_A, &e->x_w, sz);
  if (!rc) rc = edge_new(c, pds[2], dnnl_query_diff_dst_md, &m->u_dst, 0, 0, R_B, &e->dy_w, sz);
  if (!rc) rc = edge_new(c, pds[2], dnnl_query_diff_weights_md, &m->u_wei, 1, 1, R_DW, &e->dw, sz);
  if (rc) return rc;
  /* dy is reordered once for both backward primitives when their layouts agree */
  e->dy_shared = e->dy_d.move.p && e->dy_w.move.p &&
                 dnnl_memory_desc_equal(dnnl_primitive_desc_query_md(pds[1], dnnl_query_diff_dst_md, 0),
                                        dnnl_primitive_desc_query_md(pds[2], dnnl_query_diff_dst_md, 0));
  if (c->d.bias) {
    DN(dnnl_memory_create(&e->b, &m->bias, c->engine, DNNL_MEMORY_NONE));
    DN(dnnl_memory_create(&e->db, &m->bias, c->engine, DNNL_MEMORY_NONE));
    sz[R_DB] = (size_t)c->d.f * sizeof(float);
  }
done:
  return rc;
}

/* Grow the arena to `bytes` (contents are not kept). */
static int arena_reserve(nn__conv_dnnl *c, size_t bytes) {
  if (bytes <= c->arena_bytes) return 0;
  void *raw = nn_malloc(bytes + DN__ALIGN);
  if (!raw) {
    snprintf(c->why, sizeof c->why, "out of memory for a %zu-byte oneDNN arena", bytes);
    return NN_ENOMEM;
  }
  free(c->arena_raw);
  c->arena_raw = raw;
  c->arena = (char *)(((uintptr_t)raw + DN__ALIGN - 1) / DN__ALIGN * DN__ALIGN);
  c->arena_bytes = bytes;
  return 0;
}

/* Fill e (zeroed) for slice size n. On failure e is freed, then marked
 * failed for n. */
static int entry_new(nn__conv_dnnl *c, int n, dn_entry *e) {
  dn_mds m;
  dnnl_primitive_desc_t pds[3] = {NULL, NULL, NULL};
  size_t sz[R_COUNT] = {0};
  int rc = mds_init(c, n, &m);
  if (!rc) rc = pds_new(c, &m, pds);
  if (!rc) rc = edges_new(c, &m, pds, e, sz);
  for (int i = 0; i < 3 && !rc; i++) { /* prim_new takes pds[i] over */
    dn_prim *p = i == 0 ? &e->fwd : i == 1 ? &e->bwd_d : &e->bwd_w;
    rc = prim_new(c, pds[i], p, &sz[R_S]);
    pds[i] = NULL;
  }
  for (int i = 0; i < 3; i++)
    if (pds[i]) dnnl_primitive_desc_destroy(pds[i]);
  size_t at = 0;
  for (int r = 0; r < R_COUNT; r++) {
    e->off[r] = at;
    at += round_up(sz[r]);
  }
  e->bytes = at;
  if (!rc) rc = arena_reserve(c, at);
  if (rc) {
    entry_free(e);
    e->n = n;
    e->failed = 1;
    return rc;
  }
  e->n = n;
  return 0;
}

/* The entry for n: cached, or created in the empty or least recently used
 * slot. NULL when creation fails, now or before (the entry stays marked,
 * so a failing n costs one attempt, not one per call). */
static dn_entry *entry_for(nn__conv_dnnl *c, int n) {
  dn_entry *slot = &c->cache[0];
  for (int i = 0; i < NN__CONV_DNNL_CACHE; i++) {
    dn_entry *e = &c->cache[i];
    if (e->n == n) {
      e->used = ++c->clock;
      return e->failed ? NULL : e;
    }
    if (slot->n && (!e->n || e->used < slot->used)) slot = e;
  }
  entry_free(slot);
  slot->used = ++c->clock;
  return entry_new(c, n, slot) ? NULL : slot;
}

/* ---- calls ---------------------------------------------------------------------- */

void nn__conv_dnnl_set_layouts(nn__conv_dnnl *c, int in_blocked, int out_blocked) {
  in_blocked = in_blocked && c->blocked;
  out_blocked = out_blocked && c->blocked;
  if (in_blocked == c->in_blk && out_blocked == c->out_blk) return;
  for (int i = 0; i < NN__CONV_DNNL_CACHE; i++) entry_free(&c->cache[i]);
  c->in_blk = in_blocked;
  c->out_blk = out_blocked;
}

/* Point the memory objects of e's edge at the caller's buffer `buf` and, when
 * it has one, at its arena region. */
static int edge_bind(nn__conv_dnnl *c, const dn_entry *e, const dn_edge *g, const void *buf) {
  int rc = 0;
  DN(dnnl_memory_set_data_handle(g->user, (void *)(uintptr_t)buf));
  if (g->move.p) DN(dnnl_memory_set_data_handle(g->inner, c->arena + e->off[g->region]));
done:
  return rc;
}

/* Run p with args[0..nargs) (and room for one more: the scratchpad). */
static int run(nn__conv_dnnl *c, const dn_entry *e, const dn_prim *p, dnnl_exec_arg_t *args,
               int nargs) {
  int rc = 0;
  if (p->pad) {
    DN(dnnl_memory_set_data_handle(p->pad, c->arena + e->off[R_S]));
    args[nargs].arg = DNNL_ARG_SCRATCHPAD;
    args[nargs++].memory = p->pad;
  }
  DN(dnnl_primitive_execute(p->p, c->stream, nargs, args));
done:
  return rc;
}

/* The edge's reorder, if it has one: user -> inner, or inner -> user when `out`. */
static int move(nn__conv_dnnl *c, const dn_entry *e, const dn_edge *g, int out) {
  if (!g->move.p) return 0;
  dnnl_exec_arg_t a[3] = {{DNNL_ARG_FROM, out ? g->inner : g->user},
                          {DNNL_ARG_TO, out ? g->user : g->inner}};
  return run(c, e, &g->move, a, 2);
}

int nn__conv_dnnl_forward(nn__conv_dnnl *c, const float *x, const float *w, const float *b,
                          float *y, int n) {
  if (n <= 0) return 0; /* an empty slice (a rank's share of a short last batch) */
  dn_entry *e = entry_for(c, n);
  if (!e) return NN_EINTERNAL;
  int rc = edge_bind(c, e, &e->x, x);
  if (!rc) rc = edge_bind(c, e, &e->w, w);
  if (!rc) rc = edge_bind(c, e, &e->y, y);
  if (!rc) rc = move(c, e, &e->x, 0);
  if (!rc) rc = move(c, e, &e->w, 0);
  if (rc) return rc;
  dnnl_exec_arg_t a[5] = {{DNNL_ARG_SRC, e->x.inner}, {DNNL_ARG_WEIGHTS, e->w.inner},
                          {DNNL_ARG_DST, e->y.inner}};
  int na = 3;
  if (e->b) {
    if (dnnl_memory_set_data_handle(e->b, (void *)(uintptr_t)b) != dnnl_success)
      return NN_EINTERNAL;
    a[na].arg = DNNL_ARG_BIAS;
    a[na++].memory = e->b;
  }
  rc = run(c, e, &e->fwd, a, na);
  if (!rc) rc = move(c, e, &e->y, 1);
  if (!rc && dnnl_stream_wait(c->stream) != dnnl_success) rc = NN_EINTERNAL;
  return rc;
}

/* dx = the input gradient (backward-data). */
static int backward_data(nn__conv_dnnl *c, dn_entry *e, const float *w, float *dx) {
  int rc = edge_bind(c, e, &e->w_d, w);
  if (!rc) rc = edge_bind(c, e, &e->dx, dx);
  if (!rc) rc = move(c, e, &e->w_d, 0);
  if (rc) return rc;
  dnnl_exec_arg_t a[4] = {{DNNL_ARG_DIFF_DST, e->dy_d.inner}, {DNNL_ARG_WEIGHTS, e->w_d.inner},
                          {DNNL_ARG_DIFF_SRC, e->dx.inner}};
  rc = run(c, e, &e->bwd_d, a, 3);
  if (!rc) rc = move(c, e, &e->dx, 1);
  return rc;
}

/* dw += the weight gradient, db += the bias gradient (backward-weights). */
static int backward_weights(nn__conv_dnnl *c, dn_entry *e, const float *x, float *dw,
                            float *db) {
  int rc = edge_bind(c, e, &e->x_w, x);
  if (!rc) rc = edge_bind(c, e, &e->dw, dw);
  if (!rc) rc = move(c, e, &e->x_w, 0);
  if (!rc && e->db &&
      dnnl_memory_set_data_handle(e->db, c->arena + e->off[R_DB]) != dnnl_success)
    rc = NN_EINTERNAL;
  if (rc) return rc;
  dnnl_exec_arg_t a[5] = {{DNNL_ARG_SRC, e->x_w.inner}, {DNNL_ARG_DIFF_DST, e->dy_w.inner},
                          {DNNL_ARG_DIFF_WEIGHTS, e->dw.inner}};
  int na = 3;
  if (e->db) {
    a[na].arg = DNNL_ARG_DIFF_BIAS;
    a[na++].memory = e->db;
  }
  rc = run(c, e, &e->bwd_w, a, na);
  if (!rc) rc = dnnl_stream_wait(c->stream) == dnnl_success ? 0 : NN_EINTERNAL;
  if (!rc) rc = move(c, e, &e->dw, 1); /* reorder with sum: dw += */
  if (!rc && dnnl_stream_wait(c->stream) != dnnl_success) rc = NN_EINTERNAL;
  if (!rc && e->db) {
    const float *g = (const float *)(const void *)(c->arena + e->off[R_DB]);
    for (int f = 0; f < c->d.f; f++) db[f] += g[f];
  }
  return rc;
}

int nn__conv_dnnl_backward(nn__conv_dnnl *c, const float *x, const float *w, const float *dy,
                           float *dx, float *dw, float *db, int n) {
  if ((!dx && !dw) || n <= 0) return 0;
  dn_entry *e = entry_for(c, n);
  if (!e) return NN_EINTERNAL;
  /* dy: reordered for backward-data when dx is wanted, for backward-weights
   * when dw is; once when both agree on its layout */
  int rc = 0;
  if (dx) {
    rc = edge_bind(c, e, &e->dy_d, dy);
    if (!rc) rc = move(c, e, &e->dy_d, 0);
    if (!rc) rc = backward_data(c, e, w, dx);
  }
  if (!rc && dw) {
    if (dx && e->dy_shared) {
      if (dnnl_memory_set_data_handle(e->dy_w.inner, c->arena + e->off[R_B]) != dnnl_success)
        rc = NN_EINTERNAL;
    } else {
      rc = edge_bind(c, e, &e->dy_w, dy);
      if (!rc) rc = move(c, e, &e->dy_w, 0);
    }
    if (!rc) rc = backward_weights(c, e, x, dw, db);
  }
  if (!rc && dnnl_stream_wait(c->stream) != dnnl_success) rc = NN_EINTERNAL;
  return rc;
}

/* ---- life ----------------------------------------------------------------------- */

int nn__conv_dnnl_new(const nn__conv_dims *d, int blocked, int bf16, nn__conv_dnnl **out,
                      nn_error *err) {
  int rc = 0;
  nn__conv_dnnl *c = nn_calloc(1, sizeof *c);
  *out = NULL;
  if (!c) return nn_error_set(err, NN_ENOMEM, "out of memory for the oneDNN convolution");
  c->d = *d;
  c->blocked = blocked;
  c->bf16 = bf16;
  DN(dnnl_engine_create(&c->engine, dnnl_cpu, 0));
  DN(dnnl_stream_create(&c->stream, c->engine, dnnl_stream_default_flags));
  *out = c;
  return 0;
done:
  nn_error_set(err, rc, "%s", c->why);
  nn__conv_dnnl_free(c);
  return rc;
}

void nn__conv_dnnl_free(nn__conv_dnnl *c) {
  if (!c) return;
  for (int i = 0; i < NN__CONV_DNNL_CACHE; i++) entry_free(&c->cache[i]);
  if (c->stream) dnnl_stream_destroy(c->stream);
  if (c->engine) dnnl_engine_destroy(c->engine);
  free(c->arena_raw);
  free(c);
}

const char *nn__conv_dnnl_failure(const nn__conv_dnnl *c) { return c->why; }

#else /* a build without oneDNN: nn_conv_backend_choice never picks it, and these say so */

#include "core/layers/conv2d_dnnl.h"

int nn__conv_dnnl_new(const nn__conv_dims *d, int blocked, int bf16, nn__conv_dnnl **out,
                      nn_error *err) {
  (void)d;
  (void)blocked;
  (void)bf16;
  *out = NULL;
  return nn_error_set(err, NN_EINTERNAL, "this build has no oneDNN");
}

void nn__conv_dnnl_free(nn__conv_dnnl *c) { (void)c; }

int nn__conv_dnnl_forward(nn__conv_dnnl *c, const float *x, const float *w, const float *b,
                          float *y, int n) {
  (void)c, (void)x, (void)w, (void)b, (void)y, (void)n;
  return NN_EINTERNAL;
}

int nn__conv_dnnl_backward(nn__conv_dnnl *c, const float *x, const float *w, const float *dy,
                           float *dx, float *dw, float *db, int n) {
  (void)c, (void)x, (void)w, (void)dy, (void)dx, (void)dw, (void)db, (void)n;
  return NN_EINTERNAL;
}

void nn__conv_dnnl_set_layouts(nn__conv_dnnl *c, int in_blocked, int out_blocked) {
  (void)c, (void)in_blocked, (void)out_blocked;
}

const char *nn__conv_dnnl_failure(const nn__conv_dnnl *c) {
  (void)c;
  return "this build has no oneDNN";
}

#endif /* NN_HAVE_DNNL */
