#!/usr/bin/env python3
"""What scripts/mesos-runtime needs to make the PyPI build of libmesos load on Debian 12.

    elf_tool.py stubs LIB OUTDIR
        Writes, for every undefined symbol of LIB that nothing installed defines, the C source
        of a stub library (and its linker version script) into OUTDIR, and prints one line per
        stub library: "<soname> <c file> <version script or ->".
          - unversioned symbols missing from LIB's installed dependencies must be Python's
            (`_scheduler.so` was a Python 2.7 extension): they go to libmesos-python27-stub.so;
          - versioned symbols of a dependency that is not installed at all must be OpenSSL
            1.0's: they go to a stub under that soname, with the version nodes LIB asks for.
        Anything else missing is an error: it means a Debian package is missing, not a stub.
    elf_tool.py rename-version LIB FILE OLD NEW
        Makes LIB require version NEW of FILE instead of OLD (in .gnu.version_r: the name
        string, which must be of the same length, and its hash) - in place.
    elf_tool.py missing-versions LIB
        Prints "FILE VERSION" for each version LIB requires that its installed FILE lacks.

ELF64 little-endian only, read with the section headers. Standard library only.
"""
import mmap
import os
import re
import struct
import subprocess
import sys

SHT_RELA, SHT_DYNAMIC, SHT_DYNSYM = 4, 6, 11
DT_NEEDED = 1
DT_STRINGS = (1, 14, 15, 29)  # DT_NEEDED, DT_SONAME, DT_RPATH, DT_RUNPATH
SHT_GNU_VERDEF, SHT_GNU_VERNEED, SHT_GNU_VERSYM = 0x6FFFFFFD, 0x6FFFFFFE, 0x6FFFFFFF
STT_NOTYPE, STT_FUNC = 0, 2
STB_WEAK = 2
R_X86_64_JUMP_SLOT = 7
VERSYM_HIDDEN = 0x8000

# The only libraries we stub, because their code is unreachable in the way we run Mesos:
# OpenSSL 1.0 is only called when LIBPROCESS_SSL_ENABLED is set, which we never do.
STUBBABLE_LIBRARIES = {"libssl.so.1.0.0", "libcrypto.so.1.0.0"}
# Python 2.7's C API, which only the (unused) Python bindings in the .so call.
PYTHON_SYMBOL = re.compile(r"_?Py[A-Za-z0-9_]+$")
PYTHON_STUB = "libmesos-python27-stub.so"


def elf_hash(name):
    """The SysV ELF hash, which vna_hash holds (and ld.so compares before the name)."""
    h = 0
    for c in name.encode():
        h = ((h << 4) + c) & 0xFFFFFFFF
        g = h & 0xF0000000
        if g:
            h ^= g >> 24
        h &= ~g & 0xFFFFFFFF
    return h


class Elf:
    """The dynamic-linking tables of one file, found through its section headers."""

    def __init__(self, path, writable=False):
        self._file = open(path, "r+b" if writable else "rb")
        access = mmap.ACCESS_WRITE if writable else mmap.ACCESS_READ
        self.data = mmap.mmap(self._file.fileno(), 0, access=access)
        if self.data[:4] != b"\x7fELF" or self.data[4] != 2 or self.data[5] != 1:
            sys.exit(f"elf_tool: {path} is not a little-endian ELF64 file")
        shoff, = struct.unpack_from("<Q", self.data, 0x28)
        shentsize, shnum = struct.unpack_from("<HH", self.data, 0x3A)
        # (type, offset, size, link, info) of each section
        self.sections = []
        for i in range(shnum):
            _name, typ, _flags, _addr, offset, size, link, info, _align, _entsize = \
                struct.unpack_from("<IIQQQQIIQQ", self.data, shoff + i * shentsize)
            self.sections.append((typ, offset, size, link, info))
        dynsym = self.section(SHT_DYNSYM)
        self.dynstr = self.sections[dynsym[2]][1] if dynsym else None

    def close(self):
        self.data.flush()
        self.data.close()
        self._file.close()

    def section(self, sh_type):
        """(offset, size, link, info) of the first section of that type, or None."""
        for typ, offset, size, link, info in self.sections:
            if typ == sh_type:
                return offset, size, link, info
        return None

    def table(self, sh_type, fmt):
        """The entries of each section of that type, unpacked with fmt."""
        for typ, offset, size, _link, _info in self.sections:
            if typ == sh_type:
                yield from struct.iter_unpack(fmt, self.data[offset:offset + size])

    def string(self, index):
        start = self.dynstr + index
        return self.data[start:self.data.find(b"\0", start)].decode()

    def symbols(self):
        """(index, name offset, type, bind, section index) of each dynamic symbol."""
        for index, (name, info, _other, shndx, _value, _size) in enumerate(
                self.table(SHT_DYNSYM, "<IBBHQQ")):
            yield index, name, info & 0xF, info >> 4, shndx

    def dynamic(self):
        """(tag, value) of each entry of the dynamic section."""
        return self.table(SHT_DYNAMIC, "<qQ")

    def verneed(self):
        """(file offset, version name offset, version index, Vernaux entry offset) of each
        version this file requires."""
        found = self.section(SHT_GNU_VERNEED)
        if not found:
            return
        entry, _size, _link, count = found
        for _ in range(count):
            _version, cnt, file, aux, next_need = struct.unpack_from("<HHIII", self.data, entry)
            aux_entry = entry + aux
            for _ in range(cnt):
                _hash, _flags, index, name, next_aux = struct.unpack_from(
                    "<IHHII", self.data, aux_entry)
                yield file, name, index, aux_entry
                aux_entry += next_aux
            entry += next_need

    def verdef(self):
        """The name offsets of each version this file defines: its own name, then its parents'."""
        found = self.section(SHT_GNU_VERDEF)
        if not found:
            return
        entry, _size, _link, count = found
        for _ in range(count):
            _version, _flags, _ndx, cnt, _hash, aux, next_def = struct.unpack_from(
                "<HHHHIII", self.data, entry)
            names, aux_entry = [], entry + aux
            for _ in range(cnt):
                name, next_aux = struct.unpack_from("<II", self.data, aux_entry)
                names.append(name)
                aux_entry += next_aux
            yield names
            entry += next_def

    def required_versions(self):
        """(file, version, version index, Vernaux entry offset) of each required version."""
        for file, name, index, aux in self.verneed():
            yield self.string(file), self.string(name), index, aux

    def defined_versions(self):
        return {self.string(names[0]) for names in self.verdef()}

    def plt_symbols(self):
        """Indexes of the symbols that have a PLT slot: functions, whatever their type says."""
        return {info >> 32 for _offset, info, _addend in self.table(SHT_RELA, "<QQq")
                if info & 0xFFFFFFFF == R_X86_64_JUMP_SLOT}

    def undefined(self):
        """[(name, kind, weak, version or None, file or None)] of the undefined dynamic symbols.
        kind is "func" or "data"; symbols linked without their definition (NOTYPE) count as
        functions when called through the PLT (the Python ones are NOTYPE)."""
        versyms = [v for (v,) in self.table(SHT_GNU_VERSYM, "<H")]
        needs = {index: (file, version)
                 for file, version, index, _aux in self.required_versions()}
        plt = self.plt_symbols()
        result = []
        for index, name, typ, bind, shndx in self.symbols():
            if shndx != 0 or index == 0:
                continue
            if typ == STT_NOTYPE:
                kind = "func" if index in plt else "data"
            else:
                kind = "func" if typ == STT_FUNC else "data"
            version_index = versyms[index] & ~VERSYM_HIDDEN if versyms else 0
            file, version = needs.get(version_index, (None, None))
            result.append((self.string(name), kind, bind == STB_WEAK, version, file))
        return result

    def defined_names(self):
        return {self.string(name) for _i, name, _t, _b, shndx in self.symbols()
                if shndx != 0 and name}

    def needed(self):
        return [self.string(value) for tag, value in self.dynamic() if tag == DT_NEEDED]

    def string_references(self):
        """Every .dynstr offset this file refers to: symbol names, dynamic entries, versions."""
        refs = [name for _i, name, _t, _b, _s in self.symbols()]
        refs += [value for tag, value in self.dynamic() if tag in DT_STRINGS]
        for file, name, _index, _aux in self.verneed():
            refs += [file, name]
        for names in self.verdef():
            refs += names
        return refs


def installed_libraries():
    """soname -> path of the x86-64 libraries the dynamic loader knows (ldconfig's cache)."""
    out = subprocess.run(["/sbin/ldconfig", "-p"], check=True, capture_output=True, text=True)
    found = {}
    for line in out.stdout.splitlines():
        m = re.match(r"\s*(\S+) \(libc6,x86-64[^)]*\) => (\S+)$", line)
        if m:
            found.setdefault(m.group(1), m.group(2))
    return found


def missing_versions(lib):
    installed = installed_libraries()
    elf = Elf(lib)
    wanted = {}
    for file, version, _index, _aux in elf.required_versions():
        wanted.setdefault(file, set()).add(version)
    for file, versions in sorted(wanted.items()):
        if file in installed:
            provided = Elf(installed[file]).defined_versions()
            for version in sorted(versions - provided):
                yield file, version


def c_stub(symbols, library):
    """C source defining each (name, kind): functions that say they were called and return 0,
    data as zeroed bytes (PyExc_TypeError and the like are only ever addresses to the .so)."""
    lines = [f"/* Generated by tests/mesos/runtime/elf_tool.py: stand-ins for {library}. */",
             "#include <stdio.h>",
             "static long stub_called(const char *name) {",
             f'    fprintf(stderr, "mesos-runtime stub for {library}: %s called, returns 0\\n",',
             "            name);",
             "    return 0;",
             "}"]
    for name, kind in sorted(symbols):
        if kind == "func":
            lines.append(f'long {name}(void) {{ return stub_called("{name}"); }}')
        else:
            lines.append(f"unsigned char {name}[64] __attribute__((aligned(16)));")
    return "\n".join(lines) + "\n"


def version_script(nodes):
    """Version nodes, oldest first, each inheriting the previous; symbols in the node they
    are required with."""
    lines, previous = [], None
    for i, (version, names) in enumerate(sorted(nodes.items())):
        body = "".join(f" {n};" for n in sorted(names))
        local = " local: *;" if i == 0 else ""
        lines.append(f"{version} {{ global:{body}{local} }}"
                     + (f" {previous};" if previous else ";"))
        previous = version
    return "\n".join(lines) + "\n"


def write_stubs(lib, outdir):
    installed = installed_libraries()
    elf = Elf(lib)
    provided = set()
    for needed in elf.needed():
        if needed in installed:
            provided |= Elf(installed[needed]).defined_names()
    python, by_library, problems = [], {}, []
    for name, kind, weak, version, file in elf.undefined():
        if weak:
            continue  # weak references may stay unresolved (jemalloc's mallctl, gmon, ...)
        if version is None:
            if name in provided:
                continue
            if PYTHON_SYMBOL.match(name):
                python.append((name, kind))
            else:
                problems.append(f"{name} (no installed dependency of {lib} defines it)")
        elif file not in installed:
            if file in STUBBABLE_LIBRARIES:
                by_library.setdefault(file, {}).setdefault(version, []).append((name, kind))
            else:
                problems.append(f"{name}@{version} ({file} is not installed)")
    if problems:
        sys.exit("elf_tool: missing, and not ours to stub:\n  " + "\n  ".join(problems))
    os.makedirs(outdir, exist_ok=True)
    if python:
        path = os.path.join(outdir, "python27-stub.c")
        with open(path, "w") as f:
            f.write(c_stub(python, "Python 2.7"))
        print(PYTHON_STUB, path, "-")
    for file, nodes in sorted(by_library.items()):
        base = os.path.join(outdir, file.split(".so")[0] + "-stub")
        with open(base + ".c", "w") as f:
            f.write(c_stub([s for symbols in nodes.values() for s in symbols], file))
        with open(base + ".map", "w") as f:
            f.write(version_script({v: [n for n, _k in s] for v, s in nodes.items()}))
        print(file, base + ".c", base + ".map")


def rename_version(lib, file, old, new):
    if len(old) != len(new):
        sys.exit("elf_tool: the new version name must be as long as the old one (in place)")
    elf = Elf(lib, writable=True)
    refs = elf.string_references()
    for need_file, version, _index, aux in elf.required_versions():
        if need_file != file or version != old:
            continue
        name, = struct.unpack_from("<I", elf.data, aux + 8)
        # The string is overwritten in place, so nothing else may share its bytes (the linker
        # merges string tails: "xCURL_OPENSSL_3" would end in the very same bytes).
        for ref in refs:
            if ref != name and ref <= name + len(old) and ref + len(elf.string(ref)) >= name:
                sys.exit(f"elf_tool: {old} shares .dynstr bytes with another name; not renamed")
        start = elf.dynstr + name
        elf.data[start:start + len(old)] = new.encode()
        struct.pack_into("<I", elf.data, aux, elf_hash(new))  # vna_hash
        elf.close()
        return
    sys.exit(f"elf_tool: {lib} does not require {file} version {old}")


def main(argv):
    if len(argv) == 4 and argv[1] == "stubs":
        write_stubs(argv[2], argv[3])
    elif len(argv) == 6 and argv[1] == "rename-version":
        rename_version(*argv[2:])
    elif len(argv) == 3 and argv[1] == "missing-versions":
        for file, version in missing_versions(argv[2]):
            print(file, version)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
