/* test_checkpoint_h5py.c: the documented layout (docs/checkpoint-format.md),
 * read by h5py: a C-written version 2 checkpoint with two replicas has
 * str attributes, PyTorch shapes, intact metrics, and its checksum
 * recomputed in Python by the documented algorithm matches. Exits 77
 * (CTest: skipped) when /usr/bin/python3 with h5py and numpy is missing. */
#include "ckpt_fixture.h"

/* The documented layout, read by h5py: attributes are str, shapes are
 * PyTorch's, the metrics text is intact, and the checksum recomputed in
 * Python by the algorithm of docs/checkpoint-format.md matches. */
static const char *k_py =
    "import sys, struct, h5py, numpy as np\n"
    "FNV_OFFSET, FNV_PRIME, MASK = 0xcbf29ce484222325, 0x100000001b3, (1 << 64) - 1\n"
    "def fnv(h, data):\n"
    "    for b in data:\n"
    "        h = ((h ^ b) * FNV_PRIME) & MASK\n"
    "    return h\n"
    "def item(h, name, payload):\n"
    "    h = fnv(h, name.encode() + b'\\0' + struct.pack('<Q', len(payload)))\n"
    "    return fnv(h, payload)\n"
    "STATE = [('step','<q'),('epoch','<i'),('epoch_step','<q'),('seed','<Q'),\n"
    "         ('nranks','<i'),('lr','<d'),('elapsed_s','<d'),('plateau_scale','<d'),\n"
    "         ('plateau_best','<d'),('plateau_bad','<i'),('plateau_cooldown','<i'),\n"
    "         ('es_best','<d'),('es_bad','<i'),('es_best_epoch','<i')]\n"
    "OPTIONAL = [('nonfinite_run','<i'),('nonfinite_skipped','<q'),('rollbacks','<i')]\n"
    "def checksum(f):\n"
    "    h = item(FNV_OFFSET, 'format', f.attrs['format'].encode())\n"
    "    h = item(h, 'version', struct.pack('<i', int(f.attrs['version'])))\n"
    "    h = item(h, 'spec', f['spec'][()].tobytes())\n"
    "    for name in f.attrs['replicas']:\n"
    "        g, pre = f['replicas'][name], 'replicas/%s/' % name\n"
    "        h = item(h, 'replica', name.encode())\n"
    "        rows = g['tensors'][()]\n"
    "        for rec in rows:\n"
    "            key = '%s/%s/%s' % ('buffers' if rec['is_buffer'] else 'params',\n"
    "                                rec['layer'].decode(), rec['name'].decode())\n"
    "            shape = [int(d) for d in rec['shape'][:rec['ndim']]]\n"
    "            h = item(h, pre + key + ':shape', struct.pack('<%dq' % len(shape), *shape))\n"
    "            h = item(h, pre + key, np.asarray(g[key], dtype='<f4').tobytes())\n"
    "        h = item(h, pre + 'optim_type', g.attrs['optim_type'].encode())\n"
    "        h = item(h, pre + 'optim_t', struct.pack('<Q', int(g.attrs['optim_t'])))\n"
    "        ntr = int(g.attrs['ntrainable'])\n"
    "        h = item(h, pre + 'ntrainable', struct.pack('<Q', ntr))\n"
    "        for slot in g.attrs['slots']:\n"
    "            h = item(h, pre + 'slot', slot.encode())\n"
    "            off = 0\n"
    "            for rec in rows:\n"
    "                if rec['is_buffer']: continue\n"
    "                n = int(np.prod(rec['shape'][:rec['ndim']]))\n"
    "                if off < ntr:\n"
    "                    key = 'optimizer/%s/%s/%s' % (slot, rec['layer'].decode(), rec['name'].decode())\n"
    "                    h = item(h, pre + key, np.asarray(g[key], dtype='<f4').tobytes())\n"
    "                off += n\n"
    "    for name, fmt in STATE:\n"
    "        h = item(h, 'state/' + name, struct.pack(fmt, f['state'].attrs[name]))\n"
    "    for name, fmt in OPTIONAL:\n"
    "        v = f['state'].attrs.get(name, 0)\n"
    "        if v != 0: h = item(h, 'state/' + name, struct.pack(fmt, v))\n"
    "    return item(h, 'metrics', f['metrics'].asstr()[()].encode())\n"
    "f = h5py.File(sys.argv[1], 'r')\n"
    "assert f.attrs['format'] == 'nntrain-checkpoint', f.attrs['format']\n"
    "assert f.attrs['version'] == 2\n"
    "assert isinstance(f.attrs['created'], str)\n"
    "assert list(f.attrs['replicas']) == ['gen', 'disc'], list(f.attrs['replicas'])\n"
    "g, d = f['replicas/gen'], f['replicas/disc']\n"
    "assert g['params/dense0/weight'].shape == (5, 6), g['params/dense0/weight'].shape\n"
    "assert g['params/dense0/bias'].shape == (5,)\n"
    "assert g['params/dense1/weight'].shape == (3, 5)\n"
    "assert g['params/dense0/weight'].dtype == np.float32\n"
    "assert g['buffers/norm0/running_mean'][1] == -1.25\n"
    "assert g['optimizer/exp_avg_sq/dense1/weight'].shape == (3, 5)\n"
    "assert list(g.attrs['slots']) == ['exp_avg', 'exp_avg_sq']\n"
    "assert g.attrs['optim_type'] == 'adam' and int(g.attrs['optim_t']) == 77\n"
    "assert d.attrs['optim_type'] == 'sgd' and int(d.attrs['ntrainable']) == 16\n"
    "assert d['params/dense0/weight'].shape == (4, 3) and d['params/dense1/weight'].shape == (2, 4)\n"
    "assert 'dense1' not in d['optimizer/momentum_buffer'], list(d['optimizer/momentum_buffer'])\n"
    "assert 'optim_t' not in f['state'].attrs\n"
    "assert f['state'].attrs['step'] == 12\n"
    "assert f['state'].attrs['rollbacks'] == 2 and f['state'].attrs['nonfinite_run'] == 0\n"
    "m = f['metrics'].asstr()[()]\n"
    "assert 'g_loss' in m and m.count('\\n') == 1, m\n"
    "sd = {k: np.asarray(v) for k, v in g['params/dense0'].items()}\n"
    "assert abs(float(sd['weight'][1, 2]) - float(sys.argv[2])) < 1e-6, (sd['weight'][1, 2], sys.argv[2])\n"
    "got = '%016x' % checksum(f)\n"
    "assert got == f.attrs['checksum'], (got, f.attrs['checksum'])\n"
    "print('h5py ok', got)\n";

static void test_h5py_layout(void) {
  fixture fx;
  char dir[256], p[1200], py[1300], cmd[3000];
  ASSERT_OK(fixture_init(&fx));
  ASSERT_OK(make_tmpdir(dir, sizeof dir));
  nn_ckpt_snapshot s;
  nn_error e;
  nn_error_clear(&e);
  ASSERT_OK(fill_two(&fx, &s, 12));
  s.state.rollbacks = 2; /* an optional field, hashed (not 0); nonfinite_run is 0: not hashed */
  nn_ckpt_path(dir, 12, p, sizeof p);
  ASSERT_OK(nn_ckpt_write(&s, p, &e));
  snprintf(py, sizeof py, "%s/check.py", dir);
  FILE *f = fopen(py, "w");
  ASSERT_TRUE(f != NULL);
  fputs(k_py, f);
  fclose(f);
  /* dense0.weight [5, 6] row-major: element [1, 2] is at 1 * 6 + 2 */
  snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' '%s' %.9g", py, p,
           (double)s.rep[0].params[1 * 6 + 2]);
  int rc = system(cmd);
  nn_ckpt_snapshot_free(&s);
  fixture_free(&fx);
  rm_rf(dir);
  ASSERT_EQ_INT(rc, 0);
}

int main(void) {
  if (access("/usr/bin/python3", X_OK) != 0 ||
      system("/usr/bin/python3 -c 'import h5py, numpy' 2>/dev/null") != 0) {
    fprintf(stderr, "SKIPPED: /usr/bin/python3 with h5py and numpy is not available\n");
    return 77;
  }
  test_h5py_layout();
  printf("%s\n", nn__test_failed ? "test_h5py_layout: FAILED" : "test_h5py_layout: ok");
  return nn__test_failed ? 1 : 0;
}
