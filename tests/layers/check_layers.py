#!/usr/bin/env python3
"""The layer test (docs/architecture.md): every #include under src/ must point down a layer or
stay in its own room. Fails on an include that crosses the wrong way, on a room the table does
not know (so a new directory must be placed in the picture), and on a third-party header used
outside the rooms allowed to see it.

usage: check_layers.py SRC_DIR      check the tree
       check_layers.py --self-test  prove that each kind of violation is caught
"""
import os
import re
import sys
import tempfile

# Library rooms, bottom up, with the rooms each may include (besides itself). An entry
# "room/file.h" allows that one header only. Keep in step with docs/architecture.md.
LIBRARY = {
    'core': set(),
    'pcsc': {'core'},
    'pkcs11': {'core'},
    'token': {'core', 'pkcs11/backends.h'},   # the backend registry, nothing else below
    'bridge': {'core', 'token'},
    'x509': {'core'},
    'verdict': {'core', 'x509'},
    'tsa': {'core', 'x509'},
    'mime': {'core', 'x509'},
    'audit': {'core'},
    'store': {'core', 'x509'},
    'ess': {'core', 'mime', 'token', 'verdict', 'x509'},
    'cms': {'audit', 'bridge', 'core', 'ess', 'mime', 'token', 'tsa', 'verdict', 'x509'},
    'lib': {'core', 'bridge', 'token'},
}
# Applications: the public API (<p11smime/...>, not sys/) and their own directory only.
APPS = {'cli', 'gateway', 'agent', 'gpg'}

# Third-party headers that belong to one floor: PKCS#11 types and libraries below the token
# layer's boundary, OpenSSL's provider-implementation API in the bridge only.
RESTRICTED = [
    (re.compile(r'^(p11-kit/pkcs11\.h|libp11\.h|pkcs11-helper-1\.0/.*)$'), {'pkcs11', 'token'},
     'PKCS#11 headers stay in the backends and the token layer'),
    (re.compile(r'^openssl/(core|core_dispatch)\.h$'), {'bridge'},
     "OpenSSL's provider API is the bridge's"),
    (re.compile(r'^p11smime/sys/.*$'), {'pkcs11', 'token'},
     'the backend ABI is seen by the backends and the token layer only'),
]

INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]')


def check(src):
    errors = []
    rooms = sorted(d for d in os.listdir(src) if os.path.isdir(os.path.join(src, d)))
    for room in rooms:
        if room not in LIBRARY and room not in APPS:
            errors.append(f'src/{room}/: a room the layer table does not know '
                          '(add it to tests/layers/check_layers.py and docs/architecture.md)')
            continue
        for dirpath, _, files in os.walk(os.path.join(src, room)):
            for name in sorted(files):
                if not name.endswith(('.c', '.h')):
                    continue
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, os.path.dirname(src))
                with open(path, encoding='utf-8', errors='replace') as f:
                    for lineno, line in enumerate(f, 1):
                        m = INCLUDE.match(line)
                        if m:
                            why = verdict(room, m.group(1), m.group(2))
                            if why:
                                errors.append(f'{rel}:{lineno}: #include {m.group(1)}'
                                              f'{m.group(2)}: {why}')
    return errors


def verdict(room, kind, target):
    """None if `room` may include `target`, else the reason."""
    if kind == '<':
        for pattern, allowed, why in RESTRICTED:
            if pattern.match(target) and room not in allowed:
                return why
        return None
    if '/' not in target:
        return None  # a header beside the source: the room's own
    other = target.split('/', 1)[0]
    if other == room:
        return None
    if room in APPS:
        return 'applications use the public API (include/p11smime/) only'
    allowed = LIBRARY[room]
    if other in allowed or target in allowed:
        return None
    if other in LIBRARY and any(a.split('/', 1)[0] == room for a in LIBRARY[other]):
        return f'{other} is above {room}: includes point down only'
    return f'{room} may not include {other} (allowed: {", ".join(sorted(allowed)) or "none"})'


def self_test():
    cases = [
        ('token/ctx.c', '#include "bridge/bridge.h"', 'above'),
        ('pkcs11/pkcs11.c', '#include "token/token_int.h"', 'above'),
        ('x509/validate.c', '#include "cms/verify_int.h"', 'above'),
        ('token/key.c', '#include "pkcs11/ck.h"', 'may not include'),
        ('cli/main.c', '#include "token/token_int.h"', 'public API'),
        ('cms/sign.c', '#include <openssl/core_dispatch.h>', 'provider API'),
        ('mime/signed.c', '#include <p11-kit/pkcs11.h>', 'PKCS#11'),
        ('newroom/x.c', '#include "core/error_int.h"', 'does not know'),
    ]
    good = [('cms/sign.c', '#include "bridge/bridge.h"'), ('token/registry.c',
            '#include "pkcs11/backends.h"'), ('cli/io.c', '#include "cli.h"')]
    failures = 0
    for path, line, want in cases + [(p, l, None) for p, l in good]:
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, 'src')
            os.makedirs(os.path.join(src, os.path.dirname(path)))
            with open(os.path.join(src, path), 'w') as f:
                f.write(line + '\n')
            errors = check(src)
            caught = any(want in e for e in errors) if want else not errors
            print(('ok' if caught else 'not ok') + f' - {path}: {line}'
                  + (f' is refused ({want})' if want else ' is allowed'))
            failures += not caught
    print(f'{len(cases) + len(good) - failures} passed, {failures} failed')
    return 1 if failures else 0


def main():
    if sys.argv[1:] == ['--self-test']:
        return self_test()
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    errors = check(sys.argv[1])
    for e in errors:
        print(e)
    print(f'layers: {len(errors)} include(s) crossing a layer the wrong way'
          if errors else 'layers: every include points down or stays in its room')
    return 1 if errors else 0


if __name__ == '__main__':
    sys.exit(main())
