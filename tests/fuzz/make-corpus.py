#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz harness into corpus/<name>/ (committed; run again
after changing a format). Each seed is small: a few valid inputs and nearly-valid ones that
stop at each check of the parser. Regression inputs for fixed bugs live beside them under
names starting 'regress-' and are not written by this script."""
import gzip
import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, '..', 'fixtures')


def write(harness, name, data):
    d = os.path.join(HERE, 'corpus', harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), 'wb') as f:
        f.write(data.encode() if isinstance(data, str) else data)


# ---- IDX ----

def idx(code, dims, payload):
    return bytes([0, 0, code, len(dims)]) + b''.join(struct.pack('>I', d) for d in dims) + payload


IDX = {
    'u8-3': idx(0x08, [3], b'\x01\x02\x03'),
    'u8-2x2x2': idx(0x08, [2, 2, 2], bytes(range(8))),
    'i8-2': idx(0x09, [2], b'\xff\x7f'),
    'i16-3': idx(0x0B, [3], struct.pack('>3h', -1, 2, 300)),
    'i32-2': idx(0x0C, [2], struct.pack('>2i', -7, 1 << 20)),
    'f32-2x1': idx(0x0D, [2, 1], struct.pack('>2f', 1.5, -0.25)),
    'f64-1': idx(0x0E, [1], struct.pack('>d', 3.0)),
    'labels-4': idx(0x08, [4], b'\x00\x09\x03\x07'),
    'bad-magic': b'\x01\x00\x08\x01\x00\x00\x00\x01\x00',
    'bad-type': idx(0x0A, [1], b'\x00'),
    'zero-dims': bytes([0, 0, 8, 0]),
    'zero-dim': idx(0x08, [0], b''),
    'truncated-header': bytes([0, 0, 8, 2, 0, 0, 0, 1]),
    'truncated-payload': idx(0x08, [4], b'\x01\x02'),
    'oversized': idx(0x08, [2], b'\x01\x02\x03'),
    'claims-4gib': idx(0x08, [0xFFFFFFFF], b''),
    'claims-too-much': idx(0x0E, [0xFFFFFFFF, 0xFFFFFFFF], b''),
}
for name, data in IDX.items():
    write('idx', name, data)
    write('idx-gzip', name, data)
for name in ['u8-3', 'f32-2x1', 'truncated-payload', 'claims-4gib']:
    write('idx', name + '.gz', gzip.compress(IDX[name], mtime=0))
gz = bytearray(gzip.compress(IDX['u8-2x2x2'], mtime=0))
write('idx', 'gz-truncated', bytes(gz[:-6]))
gz[-8] ^= 1  # CRC
write('idx', 'gz-bad-crc', bytes(gz))
write('idx', 'gz-then-garbage', gzip.compress(IDX['u8-3'], mtime=0) + b'garbage')

# ---- safetensors ----

def st_file(header, data=b'', pad=True):
    h = header if isinstance(header, bytes) else json.dumps(header, separators=(',', ':')).encode()
    if pad:
        h += b' ' * (-len(h) % 8)
    return struct.pack('<Q', len(h)) + h + data


def t(dtype, shape, begin, end):
    return {'dtype': dtype, 'shape': shape, 'data_offsets': [begin, end]}


ST = {
    'empty': st_file({}),
    'meta-only': st_file({'__metadata__': {'format': 'pt', 'k': 'v\u00e9'}}),
    'one-f32': st_file({'w': t('F32', [2], 0, 8)}, struct.pack('<2f', 1, 2)),
    'scalar': st_file({'s': t('I64', [], 0, 8)}, struct.pack('<q', -5)),
    'zero-size': st_file({'e': t('F32', [0, 4], 0, 0), 'b': t('BOOL', [1], 0, 1)}, b'\x01'),
    'dtypes': st_file({'a': t('F16', [1], 0, 2), 'b': t('BF16', [1], 2, 4),
                       'c': t('U64', [1], 4, 12), 'd': t('F8_E4M3', [2], 12, 14)},
                      bytes(range(14))),
    'unaligned': st_file({'b': t('I8', [1], 0, 1), 'w': t('F32', [1], 1, 5)}, bytes(5)),
    'escaped-name': st_file({'a\\"b\n\u00fc': t('U8', [1], 0, 1)}, b'x'),
    'unpadded': st_file({'w': t('U8', [1], 0, 1)}, b'z', pad=False),
    'gap': st_file({'a': t('U8', [1], 0, 1), 'b': t('U8', [1], 2, 3)}, bytes(3)),
    'overlap': st_file({'a': t('U8', [2], 0, 2), 'b': t('U8', [2], 1, 3)}, bytes(3)),
    'trailing': st_file({'a': t('U8', [1], 0, 1)}, bytes(2)),
    'span-mismatch': st_file({'a': t('F32', [2], 0, 4)}, bytes(4)),
    'dup-name': st_file(b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
                        b'"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}', bytes(2)),
    'unknown-dtype': st_file({'a': t('F17', [1], 0, 4)}, bytes(4)),
    'header-past-end': struct.pack('<Q', 64) + b'{}',
    'short': b'\x02\x00\x00',
}
for name, data in ST.items():
    write('safetensors', name, data)
    write('safetensors-roundtrip', name, data)
for f in sorted(os.listdir(FIXTURES)):
    if f.endswith('.safetensors'):
        with open(os.path.join(FIXTURES, f), 'rb') as fp:
            data = fp.read()
        write('safetensors', f, data)
        write('safetensors-roundtrip', f, data)

# ---- JSON ----

JSON = {
    'object': '{"a":1,"b":[true,false,null],"c":{"d":"e"}}',
    'header': ST['one-f32'][8:8 + struct.unpack('<Q', ST['one-f32'][:8])[0]].decode(),
    'escapes': '"\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00"',
    'utf8': '["\u00fc\u4e2d\U0001f600"]',
    'ints': '[0,-0,9223372036854775807,-9223372036854775808]',
    'nested': '[' * 64 + ']' * 64,
    'too-deep': '[' * 65 + ']' * 65,
    'dup-keys': '{"k":1,"k":2}',
    'ws': ' \t\r\n{ "a" : [ 1 , 2 ] } \n',
    'fraction': '1.5',
    'overflow': '9223372036854775808',
    'leading-zero': '01',
    'lone-surrogate': '"\\ud800"',
    'bad-utf8': b'"\xc0\xaf"',
    'unterminated': '"abc\\',
    'control': '"a\tb"',
    'nul-escape': '"\\u0000"',
    'trailing': '{} x',
}
for name, data in JSON.items():
    write('json', name, data)

# ---- device specs: first byte is how many of the harness's 7 devices exist ----

SPECS = ['gpu:1', '0:0', 'pocl', 'nvidia:2', 'cpu', '', ' gpu : 1 ', 'GPU', '3', '4:0', '1:1',
         'accelerator', 'other:0', 'amd', 'gfx90a:sramecc+:xnack-', 'rusticl', 'llvmpipe:0',
         'portable computing', 'intel:1', '-1', '1:2:3', ':', 'gpu:', 'cpu:x', 'gpu:-1',
         '99999999999999999999999', 'x' * 200, 'nosuchdevice:0', '7777']
for i, spec in enumerate(SPECS):
    write('device-spec', 'spec-%02d' % i, b'\x07' + spec.encode())
write('device-spec', 'none-listed', b'\x00gpu')
write('device-spec', 'two-listed', b'\x02gpu:0')
write('device-spec', 'best-of-5', b'\x05')

# ---- program-cache entries: [key length][key][entry], the layout of src/core/program.c ----

def entry_checksum(data):
    m = (1 << 64) - 1
    a = 0xcbf29ce484222325
    b = 0x84222325cbf29ce4 ^ 0x9E3779B97F4A7C15
    for c in data:
        a = ((a ^ c) * 0x100000001b3) & m
        b = ((b ^ c) * 0x00000100000001b3 + 0x632BE59BD9B4E019) & m
        b ^= b >> 29
    return a ^ b


def entry(key, binary, key_len=None, bin_len=None, checksum=None, tail=b''):
    k = key.encode()
    e = b'CLGPROG1' + struct.pack('<I', len(k) if key_len is None else key_len) + k
    e += struct.pack('<Q', len(binary) if bin_len is None else bin_len) + binary
    e += struct.pack('<Q', entry_checksum(binary) if checksum is None else checksum) + tail
    return bytes([len(k)]) + k + e


KEY = 'clgrad-program-cache-1|dev|drv|-cl-std=CL1.2|src'
BIN = b'\x7fELF' + bytes(range(40))
PROG = {
    'valid': entry(KEY, BIN),
    'valid-short-key': entry('k', b'x'),
    'empty-key': entry('', b'bin'),
    'key-length-wrong': entry(KEY, BIN, key_len=len(KEY) + 1),
    'binary-length-past-end': entry(KEY, BIN, bin_len=len(BIN) + 9),
    'binary-length-huge': entry(KEY, BIN, bin_len=1 << 63),
    'binary-empty': entry(KEY, b''),
    'bad-checksum': entry(KEY, BIN, checksum=1),
    'trailing': entry(KEY, BIN, tail=b'\x00'),
    'truncated': entry(KEY, BIN)[:-3],
    'bad-magic': bytes([1]) + b'k' + b'CLGPROG2' + entry('k', b'x')[10:],
}
for name, data in PROG.items():
    write('program-entry', name, data)

# ---- checkpoint metadata: one key=value per line ----

HYPER = [('lr', '0.00300000003'), ('momentum', '0'), ('nesterov', 'false'),
         ('beta1', '0.899999976'), ('beta2', '0.999000013'), ('eps', '9.99999994e-09'),
         ('alpha', '0.99000001'), ('weight_decay', '0'), ('clip_norm', '0'),
         ('schedule', 'cosine'), ('warmup_steps', '100'), ('total_steps', '9380'),
         ('min_lr', '0'), ('step_size', '0'), ('gamma', '0.100000001')]
BASE = ['format=pt', 'clgrad.format=clgrad checkpoint v1', 'clgrad.rng_offset=4096']
OPT = ['clgrad.optimizer=adam', 'clgrad.optimizer_steps=9380']
FULL = BASE + OPT + ['clgrad.optimizer.%s=%s' % kv for kv in HYPER]
CKPT = {
    'params-only': BASE,
    'adam-full': FULL,
    'adam-no-hyper': BASE + OPT,
    'sgd-nesterov': BASE + ['clgrad.optimizer=sgd', 'clgrad.optimizer_steps=1'] +
    ['clgrad.optimizer.%s=%s' % (k, 'true' if k == 'nesterov' else v) for k, v in HYPER],
    'user-entries': BASE + ['epoch=3', 'note=h\u00e9llo'],
    'partial-hyper': FULL[:-3],
    'hyper-no-kind': BASE + ['clgrad.optimizer.%s=%s' % kv for kv in HYPER],
    'unknown-kind': BASE + ['clgrad.optimizer=lamb'],
    'unknown-key': BASE + ['clgrad.colour=blue'],
    'bad-format': ['clgrad.format=clgrad checkpoint v2'],
    'bad-rng': ['clgrad.rng_offset=-1'],
    'bad-steps': OPT[:1] + ['clgrad.optimizer_steps=1e3'],
    'bad-float': FULL[:5] + ['clgrad.optimizer.lr=nan'] + FULL[6:],
    'bad-schedule': [l.replace('cosine', 'linear') for l in FULL],
    'steps-overflow': OPT[:1] + ['clgrad.optimizer_steps=9223372036854775808'],
    'two-groups': FULL + ['clgrad.optimizer.groups=2', 'clgrad.optimizer.group1.params=["w"]'] +
    ['clgrad.optimizer.group1.%s=%s' % kv for kv in HYPER],
    'group-count-wrong': FULL + ['clgrad.optimizer.groups=3',
                                 'clgrad.optimizer.group1.params=["w","b"]'] +
    ['clgrad.optimizer.group1.%s=%s' % kv for kv in HYPER],
    'group-params-not-json': FULL + ['clgrad.optimizer.groups=2',
                                     'clgrad.optimizer.group1.params=[w'] +
    ['clgrad.optimizer.group1.%s=%s' % kv for kv in HYPER],
}
for name, lines in CKPT.items():
    write('checkpoint-meta', name, '\n'.join(lines) + '\n')

sys.exit(0)
