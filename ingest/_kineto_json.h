/* JSON lexing for _kineto_scan.c: strict RFC 8259 (a document this accepts, msgspec accepts
 * too), fast on the long plain strings of profiler traces.  Included once, by _kineto_scan.c. */
#ifndef TRACEHOUSE_KINETO_JSON_H
#define TRACEHOUSE_KINETO_JSON_H
#include <stdint.h>
#include <string.h>

#define MAX_DEPTH 64
#define DECLINE (-1)
#define NOMEM (-2)

typedef const unsigned char *cur;

/* 1 for bytes that end the fast path of a string: quote, backslash, control, non-ASCII. */
static unsigned char STOP[256];  /* filled by init_tables (_kineto_scan.c) */

static inline cur skip_ws(cur p, cur end) {
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
    return p;
}

static int hex4(cur p, cur end, unsigned *out) {
    unsigned v = 0;
    if (end - p < 4) return DECLINE;
    for (int i = 0; i < 4; i++) {
        unsigned c = p[i], d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else return DECLINE;
        v = v << 4 | d;
    }
    *out = v;
    return 0;
}

/* Length of the valid UTF-8 sequence at p (strict: no overlongs, surrogates or > U+10FFFF). */
static int utf8_len(cur p, cur end) {
    unsigned c = p[0];
    int n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 0;
    if (n == 0 || c > 0xF4 || end - p < n) return 0;
    for (int i = 1; i < n; i++) if ((p[i] & 0xC0) != 0x80) return 0;
    if (c == 0xE0 && p[1] < 0xA0) return 0;
    if (c == 0xED && p[1] > 0x9F) return 0;
    if (c == 0xF0 && p[1] < 0x90) return 0;
    if (c == 0xF4 && p[1] > 0x8F) return 0;
    return n;
}

/* True when one of the 8 bytes in w may end a string's fast path (the byte tests of the
 * "has a zero byte" family: they never miss such a byte, and the slow loop re-checks). */
static inline int may_stop(uint64_t w) {
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    uint64_t quote = w ^ (ones * '"'), slash = w ^ (ones * '\\');
    return ((((quote - ones) & ~quote) | ((slash - ones) & ~slash) | ((w - ones * 0x20) & ~w) | w) & highs) != 0;
}

/* A string starting after its opening quote; *p ends after the closing quote.  Sets *esc
 * when it holds escapes.  Escaped surrogates must pair, as in strict UTF-8. */
static int lex_string(cur *pp, cur end, int *esc) {
    cur p = *pp;
    *esc = 0;
    for (;;) {
        uint64_t w;  /* eight bytes at a time: names are long and plain */
        while (end - p >= 8 && (memcpy(&w, p, 8), !may_stop(w))) p += 8;
        while (p < end && !STOP[*p]) p++;
        if (p >= end) return DECLINE;
        if (*p == '"') { *pp = p + 1; return 0; }
        if (*p < 0x20) return DECLINE;
        if (*p >= 0x80) {
            int n = utf8_len(p, end);
            if (!n) return DECLINE;
            p += n;
            continue;
        }
        *esc = 1;  /* backslash */
        if (++p >= end) return DECLINE;
        if (*p == 'u') {
            unsigned u, lo;
            if (hex4(p + 1, end, &u)) return DECLINE;
            p += 5;
            if (u >= 0xDC00 && u <= 0xDFFF) return DECLINE;
            if (u >= 0xD800 && u <= 0xDBFF) {
                if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || hex4(p + 2, end, &lo)) return DECLINE;
                if (lo < 0xDC00 || lo > 0xDFFF) return DECLINE;
                p += 6;
            }
        } else if (strchr("\"\\/bfnrt", *p) && *p) {
            p++;
        } else {
            return DECLINE;
        }
    }
}

/* JSON number grammar; *is_int when it has neither fraction nor exponent, *has_exp for e/E. */
static int lex_number(cur *pp, cur end, int *is_int, int *has_exp) {
    cur p = *pp;
    *is_int = 1; *has_exp = 0;
    if (p < end && *p == '-') p++;
    if (p >= end) return DECLINE;
    if (*p == '0') p++;
    else if (*p >= '1' && *p <= '9') while (p < end && *p >= '0' && *p <= '9') p++;
    else return DECLINE;
    if (p < end && *p == '.') {
        *is_int = 0;
        if (++p >= end || *p < '0' || *p > '9') return DECLINE;
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        *is_int = 0; *has_exp = 1;
        if (++p < end && (*p == '+' || *p == '-')) p++;
        if (p >= end || *p < '0' || *p > '9') return DECLINE;
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    *pp = p;
    return 0;
}

/* The integer token [s, e) as int64; DECLINE past int64's range. */
static int to_int64(cur s, cur e, int64_t *out) {
    int neg = *s == '-';
    uint64_t v = 0, limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (cur p = s + neg; p < e; p++) {
        unsigned d = *p - '0';
        if (v > (limit - d) / 10) return DECLINE;
        v = v * 10 + d;
    }
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return 0;
}

enum Kind { ABSENT = 0, K_NULL, K_STR, K_INT, K_NUM, K_ARR, K_OBJ, K_BOOL };

typedef struct {
    cur s, e;        /* the token's text; for strings, between the quotes */
    int kind, esc, has_exp;
    int64_t ival;    /* K_INT fields read as ints */
} Val;

static int skip_value(cur *pp, cur end, int depth, Val *v);

static int skip_container(cur *pp, cur end, int depth, int is_obj) {
    cur p = skip_ws(*pp + 1, end);
    char close = is_obj ? '}' : ']';
    Val tmp;
    if (depth >= MAX_DEPTH) return DECLINE;
    if (p < end && *p == close) { *pp = p + 1; return 0; }
    for (;;) {
        if (is_obj) {
            int esc;
            if (p >= end || *p != '"') return DECLINE;
            p++;
            if (lex_string(&p, end, &esc)) return DECLINE;
            p = skip_ws(p, end);
            if (p >= end || *p != ':') return DECLINE;
            p = skip_ws(p + 1, end);
        }
        if (skip_value(&p, end, depth + 1, &tmp)) return DECLINE;
        p = skip_ws(p, end);
        if (p >= end) return DECLINE;
        if (*p == close) { *pp = p + 1; return 0; }
        if (*p != ',') return DECLINE;
        p = skip_ws(p + 1, end);
    }
}

/* Any value at *pp (whitespace already skipped): validated, its span and kind into *v. */
static int skip_value(cur *pp, cur end, int depth, Val *v) {
    cur p = *pp;
    int is_int;
    if (p >= end) return DECLINE;
    v->s = p; v->esc = 0; v->has_exp = 0;
    switch (*p) {
    case '"':
        v->kind = K_STR;
        v->s = ++p;
        if (lex_string(&p, end, &v->esc)) return DECLINE;
        v->e = p - 1;
        break;
    case '{': case '[':
        v->kind = *p == '{' ? K_OBJ : K_ARR;
        if (skip_container(&p, end, depth, *p == '{')) return DECLINE;
        v->e = p;
        break;
    case 't': case 'f': case 'n': {
        const char *word = *p == 't' ? "true" : *p == 'f' ? "false" : "null";
        size_t n = strlen(word);
        if ((size_t)(end - p) < n || memcmp(p, word, n)) return DECLINE;
        v->kind = *p == 'n' ? K_NULL : K_BOOL;
        p += n;
        v->e = p;
        break;
    }
    default:
        if (lex_number(&p, end, &is_int, &v->has_exp)) return DECLINE;
        v->kind = is_int ? K_INT : K_NUM;
        v->e = p;
    }
    *pp = p;
    return 0;
}

#endif
