"""Small statistics helpers."""


def mean(xs):
    """Arithmetic mean of a non-empty sequence."""
    return sum(xs) / len(xs)


def median(xs):
    """Median of a non-empty sequence."""
    n = len(xs)
    mid = n // 2
    if n % 2:
        return xs[mid]
    return (xs[mid - 1] + xs[mid]) / 2


def percentile(xs, p):
    """p-th percentile (0..100), linear interpolation between closest ranks."""
    s = sorted(xs)
    k = len(s) * p / 100
    f = int(k)
    c = min(f + 1, len(s) - 1)
    return s[f] + (s[c] - s[f]) * (k - f)
