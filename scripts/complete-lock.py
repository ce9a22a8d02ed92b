# Adds lock entries for platform-specific optional packages that this machine's registry does not
# serve (it mirrors linux-x64 builds only); npm ci needs them listed, and skips them off-platform.
import json, re, sys
path = sys.argv[1]
lock = json.load(open(path))
pkgs = lock['packages']
added = []
for key, entry in list(pkgs.items()):
    for name, version in (entry.get('optionalDependencies') or {}).items():
        if f'node_modules/{name}' in pkgs:
            continue
        tail = name.split('/')[-1]
        m = re.search(r'(darwin|linux|win32)-(arm64|x64)(?:-(gnu|musl))?$', tail)
        if not m:
            print('cannot place', name, file=sys.stderr); continue
        e = {'version': version, 'optional': True, 'os': [m.group(1)], 'cpu': [m.group(2)]}
        if m.group(3): e['libc'] = ['glibc' if m.group(3) == 'gnu' else 'musl']
        if entry.get('dev'): e['dev'] = True
        pkgs[f'node_modules/{name}'] = e
        added.append(name)
lock['packages'] = dict(sorted(pkgs.items(), key=lambda kv: (kv[0] != '', kv[0])))
json.dump(lock, open(path, 'w'), indent=2)
open(path, 'a').write('\n')
print('added', len(added), added)
