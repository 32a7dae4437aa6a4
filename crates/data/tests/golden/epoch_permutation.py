#!/usr/bin/env python3
"""Golden values for crates/data/src/batch.rs (`permutation_matches_python_reference`).

Run: python3 crates/data/tests/golden/epoch_permutation.py
"""
# Independent reimplementation of bigbatch_data::epoch_permutation:
# ChaCha8 (djb layout: 64-bit block counter in words 12-13, stream id in 14-15),
# key = seed LE || domain LE || 0^16, u64 = lo word | hi word << 32, Fisher-Yates
# from the end with Lemire's bounded draw.
import struct
M = 0xffffffff
def rotl(x, n): return ((x << n) | (x >> (32 - n))) & M
def qr(s, a, b, c, d):
    s[a]=(s[a]+s[b])&M; s[d]=rotl(s[d]^s[a],16)
    s[c]=(s[c]+s[d])&M; s[b]=rotl(s[b]^s[c],12)
    s[a]=(s[a]+s[b])&M; s[d]=rotl(s[d]^s[a],8)
    s[c]=(s[c]+s[d])&M; s[b]=rotl(s[b]^s[c],7)
def block(key, counter, stream, rounds=8):
    k = struct.unpack('<8I', key)
    st = [0x61707865,0x3320646e,0x79622d32,0x6b206574,*k,
          counter & M, counter >> 32, stream & M, stream >> 32]
    w = st[:]
    for _ in range(rounds // 2):
        qr(w,0,4,8,12); qr(w,1,5,9,13); qr(w,2,6,10,14); qr(w,3,7,11,15)
        qr(w,0,5,10,15); qr(w,1,6,11,12); qr(w,2,7,8,13); qr(w,3,4,9,14)
    return [(a+b)&M for a,b in zip(w,st)]
def words(key, stream):
    c = 0
    while True:
        for x in block(key, c, stream): yield x
        c += 1
def perm(n, seed, epoch, domain=0):
    key = struct.pack('<QQ', seed, domain) + bytes(16)
    g = words(key, epoch)
    def u64():
        lo = next(g); hi = next(g); return lo | (hi << 32)
    def below(s):
        m = u64() * s; l = m & (2**64-1)
        if l < s:
            t = (2**64 - s) % s
            while l < t:
                m = u64() * s; l = m & (2**64-1)
        return m >> 64
    o = list(range(n))
    for i in range(n-1, 0, -1):
        j = below(i+1); o[i], o[j] = o[j], o[i]
    return o

if __name__ == '__main__':
    # Known-answer check of the cipher: ChaCha8, all-zero key and nonce, first block
    # starts 3e00ef2f895f40d67f5bb8e81f09a5a1 (Bernstein's reference test vectors).
    assert struct.pack('<16I', *block(bytes(32), 0, 0))[:16].hex() == '3e00ef2f895f40d67f5bb8e81f09a5a1'
    for args in [(10, 0, 0), (10, 0, 1), (10, 42, 7)]:
        print(args, perm(*args))
    # stratified_split uses domain 1 with the class as the stream.
    print('domain 1', perm(10, 5, 3, domain=1))
