#!/usr/bin/python3
# Oracle fixtures for the monitor's statistics (tests/monitor/*.test.ts): scipy's ks_2samp,
# kstwo and smirnov, chi2.sf, numpy's quantiles, scikit-learn's label metrics and a
# Benjamini-Hochberg reference, written as JSON under tests/fixtures/monitor/. CI has no scipy:
# the tests read only the JSON. Regenerate after a scipy/sklearn upgrade with
#     /usr/bin/python3 scripts/monitor-fixtures.py
# (Debian's python3-scipy and python3-sklearn: apt-get install -y python3-scipy python3-sklearn).
# Everything is seeded; the KS samples are not stored but regenerated in the tests from the
# same integer generator (MINSTD), so the files stay small.
import json
import math
import os
import sys

import numpy as np
import scipy
import scipy.special
import sklearn
from scipy import stats
from sklearn import metrics

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests', 'fixtures', 'monitor')
VERSIONS = {'python': sys.version.split()[0], 'numpy': np.__version__, 'scipy': scipy.__version__, 'sklearn': sklearn.__version__}


def num(x):
    """JSON has no NaN or infinities: write them as strings the tests turn back into numbers."""
    x = float(x)
    if math.isnan(x):
        return 'NaN'
    if math.isinf(x):
        return 'Infinity' if x > 0 else '-Infinity'
    return x


def write(name, body):
    body = {'generated_by': 'scripts/monitor-fixtures.py', 'versions': VERSIONS, **body}
    path = os.path.join(OUT, name)
    with open(path, 'w') as f:
        json.dump(body, f, separators=(',', ':'), allow_nan=False)
        f.write('\n')
    print(f'{path}: {os.path.getsize(path)} bytes')


# ---------------------------------------------------------------------------------------------
# KS


class Minstd:
    """Park-Miller MINSTD (48271): exact in a double, so the tests regenerate the same integers."""

    def __init__(self, seed):
        self.state = seed

    def next(self):
        self.state = self.state * 48271 % 2147483647
        return self.state


def ks_samples(seed, n1, n2, mod_a, mod_b, offset_b):
    g = Minstd(seed)
    a = np.array([g.next() % mod_a for _ in range(n1)], dtype=np.float64)
    b = np.array([g.next() % mod_b + offset_b for _ in range(n2)], dtype=np.float64)
    return a, b


CONT = 2147483647  # no modulus: practically no ties
SHIFT = 2 ** 31  # offset_b = shift * SHIFT moves b by `shift` of the range

# (n1, n2, mod_a, mod_b, offset_b)
KS_CASES = [
    # tiny
    (1, 1, CONT, CONT, 0), (1, 2, CONT, CONT, 0), (2, 1, CONT, CONT, 0), (3, 3, CONT, CONT, 0),
    (2, 5, CONT, CONT, 0), (5, 7, CONT, CONT, 0), (8, 8, CONT, CONT, 0), (10, 3, CONT, CONT, 0),
    # small and medium, same distribution
    (20, 20, CONT, CONT, 0), (20, 30, CONT, CONT, 0), (37, 50, CONT, CONT, 0), (100, 100, CONT, CONT, 0),
    (100, 150, CONT, CONT, 0), (250, 400, CONT, CONT, 0), (1000, 1000, CONT, CONT, 0),
    (1000, 1500, CONT, CONT, 0), (3000, 2000, CONT, CONT, 0),
    # largest exact sizes
    (10000, 10000, CONT, CONT, 0), (10000, 9000, CONT, CONT, 0), (7000, 10000, CONT, CONT, int(0.1 * SHIFT)),
    # asymptotic
    (10001, 10001, CONT, CONT, 0), (20000, 15000, CONT, CONT, 0), (20000, 5, CONT, CONT, 0),
    (12000, 1, CONT, CONT, 0), (15000, 30, CONT, CONT, 0), (20000, 20000, CONT, CONT, int(0.005 * SHIFT)),
    (15000, 140, CONT, CONT, int(0.2 * SHIFT)), (11000, 300, CONT, CONT, int(0.1 * SHIFT)),
    # tied integers
    (50, 60, 5, 5, 0), (200, 200, 2, 2, 0), (500, 800, 20, 20, 0), (500, 800, 20, 20, 1),
    (10000, 10000, 3, 3, 0), (15000, 12000, 10, 10, 0), (15000, 12000, 10, 11, 0),
    # large D, tiny p
    (100, 120, CONT, CONT, 4 * SHIFT), (300, 300, CONT, CONT, int(0.5 * SHIFT)),
    (2000, 3000, CONT, CONT, int(0.3 * SHIFT)), (12000, 15000, CONT, CONT, int(0.05 * SHIFT)),
    (20000, 400, CONT, CONT, int(0.3 * SHIFT)),
]


def ks_fixtures():
    samples = []
    for i, (n1, n2, mod_a, mod_b, offset_b) in enumerate(KS_CASES):
        seed = 1000 + 7919 * i
        a, b = ks_samples(seed, n1, n2, mod_a, mod_b, offset_b)
        row = {'seed': seed, 'n1': n1, 'n2': n2, 'modA': mod_a, 'modB': mod_b, 'offsetB': offset_b, 'results': {}}
        methods = ['auto', 'asymp']
        if max(n1, n2) <= 10000 or n1 * n2 <= 10 ** 6:
            methods.append('exact')
        for method in methods:
            r = stats.ks_2samp(a, b, method=method)
            row['results'][method] = {'statistic': num(r.statistic), 'pValue': num(r.pvalue)}
        samples.append(row)

    # kstwo.sf(x, n) across the branches of _kolmogn.
    kstwo = []
    for n in [1, 2, 3, 5, 10, 20, 50, 100, 140, 141, 200, 1000, 5000, 20000, 100000, 100001, 500000, 2000000]:
        xs = [0.4 / n, 0.75 / n, 1.0 / n, (n - 0.5) / n, 0.5, 0.6, 0.9, math.sqrt(0.3 / n), math.sqrt(0.7 / n),
              math.sqrt(1.0 / n), math.sqrt(1.5 / n), math.sqrt(2.0 / n), math.sqrt(3.9 / n), math.sqrt(6.0 / n),
              math.sqrt(10.0 / n), math.sqrt(30.0 / n), math.sqrt(100.0 / n), math.sqrt(300.0 / n),
              math.sqrt(400.0 / n), (1.0 / n) ** (2 / 3), (1.3 / n) ** (2 / 3)]
        for x in sorted(set(xs)):
            if 0 < x < 1:
                kstwo.append({'n': n, 'x': x, 'sf': num(stats.kstwo.sf(x, n))})

    smirnov = []
    for n in [1, 2, 5, 10, 50, 100, 1000, 1013, 5000, 100000, 1000000, 1000001, 5000000]:
        xs = [0.5 / n, 1.0 / n, 1.5 / n, 3.0 / n, math.sqrt(0.1 / n), math.sqrt(1.0 / n), math.sqrt(2.2 / n),
              math.sqrt(10.0 / n), math.sqrt(50.0 / n), math.sqrt(300.0 / n), 0.5, 0.7, 1 - 0.5 / n, 1 - 1.5 / n]
        for x in sorted(set(xs)):
            if 0 < x < 1:
                smirnov.append({'n': n, 'x': x, 'sf': num(scipy.special.smirnov(n, x))})

    # The p-value ks_2samp gives a statistic D at sizes (n1, n2): exact grid on the lattice.
    exact = []
    for n1, n2 in [(1, 1), (2, 3), (5, 5), (7, 13), (30, 30), (40, 100), (99, 100), (500, 500), (300, 700), (2000, 2000),
                   (1500, 4000), (10000, 10000)]:
        g = math.gcd(n1, n2)
        lcm = n1 // g * n2
        for frac in [0.0, 0.01, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0]:
            h = round(frac * lcm)
            d = h / lcm
            if (n1, n2) == (1500, 4000) and frac > 0.2:
                continue  # keeps the test fast: the inside method costs about n1 * n2 * D steps
            exact.append({'n1': n1, 'n2': n2, 'd': d, 'pValue': num(ks_p_from_d(d, n1, n2))})
    write('ks.json', {'samples': samples, 'kstwo': kstwo, 'smirnov': smirnov, 'exact': exact})


def ks_p_from_d(d, n1, n2):
    """ks_2samp's two-sided p-value for a given D with method='auto' (its own code path)."""
    from scipy.stats._stats_py import _attempt_exact_2kssamp
    g = math.gcd(n1, n2)
    if max(n1, n2) <= 10000:
        success, d, prob = _attempt_exact_2kssamp(n1, n2, g, d, 'two-sided')
        if success:
            return float(np.clip(prob, 0, 1))
    m, n = sorted([float(n1), float(n2)], reverse=True)
    return float(np.clip(stats.kstwo.sf(d, np.round(m * n / (m + n))), 0, 1))


# ---------------------------------------------------------------------------------------------
# chi2.sf


def chi2_fixtures():
    # scipy's chi2.sf (cephes igamc) is itself off by up to ~1e-12 relative for large k, so the
    # exact value (mpmath, 40 digits) is recorded next to it.
    import mpmath
    mpmath.mp.dps = 40
    rows = []
    for k in [1, 2, 3, 4, 5, 9, 10, 29, 99, 100, 999, 1000, 10000, 100000, 0.5, 2.5]:
        xs = [k * f for f in [0.01, 0.1, 0.5, 0.9, 0.99, 1, 1.01, 1.1, 1.5, 2, 3, 5, 10]]
        xs += [1e-10, 1e-3, 0.5, 1, 2, 10, 50, 100, 500, 1000, 1400]
        for x in sorted(set(xs)):
            exact = mpmath.gammainc(mpmath.mpf(k) / 2, mpmath.mpf(x) / 2, mpmath.inf, regularized=True)
            rows.append({'x': x, 'k': k, 'sf': num(stats.chi2.sf(x, k)), 'exact': num(float(exact))})
    write('chi2.json', {'mpmath': mpmath.__version__, 'chi2_sf': rows})


# ---------------------------------------------------------------------------------------------
# numpy quantiles


def quantile_fixtures():
    rng = np.random.default_rng(20261122)
    probabilities = [k / 10 for k in range(1, 10)] + [0.0, 1.0, 0.25, 0.5, 1 / 3, 0.999, 0.001]
    cases = []
    for n in [1, 2, 3, 5, 9, 10, 11, 17, 100, 1000]:
        cases.append(np.sort(rng.normal(size=n)))
    cases.append(np.sort(rng.integers(0, 4, size=50).astype(np.float64)))  # heavy ties
    cases.append(np.sort(np.concatenate([np.zeros(40), rng.exponential(size=10)])))  # mass at the minimum
    cases.append(np.sort(rng.integers(-3, 3, size=13).astype(np.float64) * 0.1))
    cases.append(np.sort(rng.normal(size=30) * 1e6))
    rows = [{'sorted': [num(v) for v in c], 'quantiles': [num(v) for v in np.quantile(c, probabilities)]} for c in cases]
    write('quantiles.json', {'probabilities': probabilities, 'cases': rows})


# ---------------------------------------------------------------------------------------------
# scikit-learn label metrics


def prf(y, pred, w, zero_division):
    p, r, f, _ = metrics.precision_recall_fscore_support(y, pred, average='binary', sample_weight=w, zero_division=zero_division)
    return num(p), num(r), num(f)


def label_case(name, groups, thresholds, expand):
    """groups: [(score, positives, negatives)]. expand: one row per example, else weighted rows."""
    if expand:
        y = np.array([v for s, p, q in groups for v in [1] * int(p) + [0] * int(q)], dtype=np.int64)
        s = np.array([sc for sc, p, q in groups for sc in [sc] * int(p + q)], dtype=np.float64)
        w = None
    else:
        y = np.array([v for sc, p, q in groups for v, c in ((1, p), (0, q)) if c > 0], dtype=np.int64)
        s = np.array([sc for sc, p, q in groups for c in (p, q) if c > 0], dtype=np.float64)
        w = np.array([c for sc, p, q in groups for c in (p, q) if c > 0], dtype=np.float64)
    both = len(set(y.tolist())) == 2
    row = {'name': name, 'groups': [{'score': num(sc), 'positives': p, 'negatives': q} for sc, p, q in groups]}
    row['rocAuc'] = num(metrics.roc_auc_score(y, s, sample_weight=w)) if both else 'NaN'
    # SEMANTICS clips at 1e-15; scikit-learn 1.2's default is eps='auto' (float64 machine epsilon).
    row['logLoss'] = num(metrics.log_loss(y, s, eps=1e-15, sample_weight=w, labels=[0, 1]))
    row['brier'] = num(metrics.brier_score_loss(y, s, sample_weight=w, pos_label=1))
    row['atThreshold'] = []
    for t in thresholds:
        pred = (s >= t).astype(np.int64)
        p0, r0, f0 = prf(y, pred, w, 0)
        p1, r1, f1 = prf(y, pred, w, 1)
        row['atThreshold'].append({
            'threshold': t,
            'precision': p0, 'recall': r0, 'f1': f0,
            'precisionZeroDivisionOne': p1, 'recallZeroDivisionOne': r1, 'f1ZeroDivisionOne': f1,
            'accuracy': num(metrics.accuracy_score(y, pred, sample_weight=w)),
        })
    return row


def label_fixtures():
    import warnings
    warnings.simplefilter('ignore')  # zero_division warnings are the cases under test
    rng = np.random.default_rng(424242)
    thresholds = [0.5, 0.3, 0.0, 0.999, 1.1]
    cases = []
    scores = rng.random(200)
    cases.append(label_case('distinct scores', [(float(sc), int(rng.integers(0, 4)), int(rng.integers(0, 4))) for sc in scores], thresholds, True))
    tied = np.round(rng.random(300), 1)
    g = {}
    for sc in tied:
        p, q = g.get(float(sc), (0, 0))
        pos = rng.random() < sc
        g[float(sc)] = (p + int(pos), q + int(not pos))
    cases.append(label_case('tied scores', sorted([(sc, p, q) for sc, (p, q) in g.items()]), thresholds, True))
    cases.append(label_case('scores at 0 and 1', [(0.0, 3, 5), (1.0, 4, 2), (0.5, 1, 1), (1e-17, 1, 0), (1 - 1e-17, 0, 1)], thresholds, True))
    cases.append(label_case('positives only', [(0.2, 3, 0), (0.7, 5, 0)], thresholds, True))
    cases.append(label_case('negatives only', [(0.2, 0, 3), (0.7, 0, 5)], thresholds, True))
    big = [(float(sc), int(rng.integers(0, 2_000_000)), int(rng.integers(0, 2_000_000))) for sc in np.round(rng.random(500), 3)]
    merged = {}
    for sc, p, q in big:
        a, b = merged.get(sc, (0, 0))
        merged[sc] = (a + p, b + q)
    cases.append(label_case('large counts (weighted rows)', sorted([(sc, p, q) for sc, (p, q) in merged.items()]), thresholds, False))

    rng = np.random.default_rng(777)
    y_true = rng.normal(size=1000) * 10
    y_pred = y_true + rng.normal(size=1000) * 3 + 0.5
    regression = {
        'yTrue': [num(v) for v in y_true], 'yPred': [num(v) for v in y_pred],
        'mae': num(metrics.mean_absolute_error(y_true, y_pred)),
        'rmse': num(metrics.mean_squared_error(y_true, y_pred, squared=False)),
        'mse': num(metrics.mean_squared_error(y_true, y_pred)),
    }
    write('label_metrics.json', {'binary': cases, 'regression': regression})


# ---------------------------------------------------------------------------------------------
# Benjamini-Hochberg by hand (scipy 1.10 has no false_discovery_control; it came in 1.11)


def bh(p, q):
    p = np.asarray(p, dtype=np.float64)
    m = len(p)
    order = np.argsort(p, kind='stable')
    ranked = p[order]
    below = ranked <= q * np.arange(1, m + 1) / m
    k = int(np.max(np.nonzero(below)[0]) + 1) if below.any() else 0
    rejected = np.zeros(m, dtype=bool)
    rejected[order[:k]] = True
    adj_sorted = np.minimum.accumulate((ranked * m / np.arange(1, m + 1))[::-1])[::-1]
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(adj_sorted, 1)
    return rejected.tolist(), [num(v) for v in adjusted]


def bh_fixtures():
    rng = np.random.default_rng(99)
    cases = []
    sets = [
        [0.01, 0.04, 0.03, 0.5, 0.2],
        [0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205, 0.212, 0.216, 0.222, 0.251, 0.269, 0.275, 0.34, 0.341, 0.384, 0.569, 0.594, 0.696, 0.762, 0.94, 0.942, 0.975, 0.986],
        [0.02, 0.02, 0.02, 0.02],
        [1.0, 1.0, 0.9],
        [0.0, 0.5],
        rng.random(50).tolist(),
        np.concatenate([rng.random(200), rng.random(20) * 1e-4]).tolist(),
    ]
    for p in sets:
        for q in [0.05, 0.1]:
            rejected, adjusted = bh(p, q)
            cases.append({'pValues': [num(v) for v in p], 'q': q, 'rejected': rejected, 'adjusted': adjusted})
    write('bh.json', {'cases': cases})


if __name__ == '__main__':
    os.makedirs(OUT, exist_ok=True)
    ks_fixtures()
    chi2_fixtures()
    quantile_fixtures()
    label_fixtures()
    bh_fixtures()
