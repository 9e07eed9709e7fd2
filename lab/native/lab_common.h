/* What both lab fast paths share: a site by its address, Python's float %, and whether a
   site answers at a time (lab/behaviour.py). */
#ifndef CONECTADO_LAB_COMMON_H
#define CONECTADO_LAB_COMMON_H

#include <math.h>
#include <stdint.h>

/* The site at host-order IPv4 `addr` (binary search of the `n` sorted `addrs`), or -1. */
static inline int lab_find_site(const uint32_t *addrs, const int32_t *addr_site, int n,
                                uint32_t addr) {
    int lo = 0, hi = n;
    while (lo < hi) {
        int mid = (lo + hi) >> 1;
        if (addrs[mid] < addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && addrs[lo] == addr ? addr_site[lo] : -1;
}

/* Python's float x % y (CPython's float_rem): fmod, then the sign of the divisor. */
static inline double lab_py_mod(double x, double y) {
    double mod = fmod(x, y);
    if (mod != 0.0) {
        if ((y < 0.0) != (mod < 0.0)) mod += y;
    } else {
        mod = copysign(0.0, y);
    }
    return mod;
}

/* SiteBehaviour.answers(now): not down, and not in the down half of its flap period (a
   period of 0 does not flap). */
static inline int lab_answers(int down, double flap_period, double flap_phase, double now) {
    if (down) return 0;
    if (flap_period <= 0.0) return 1;
    return lab_py_mod(now - flap_phase, flap_period) < flap_period / 2.0;
}

#endif
