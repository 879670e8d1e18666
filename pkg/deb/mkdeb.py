#!/usr/bin/python3
"""Builds vmgate_VERSION_amd64.deb (make deb) with dpkg-deb, no debhelper.

  mkdeb.py --vmgate BIN [--signer BIN] --out DIR

The package: /usr/sbin/vmgate and, with Kconfig KEY_SIGNER (the default),
/usr/sbin/vmgate-signer beside it, where vmgate looks for it (debug info
stripped), /etc/vmgate/appliance.yaml (a conffile), the systemd unit,
vmgate(8) made from the README's "Command line" section and
vmgate-signer(8) from its "The signer" section, the README, copyright and
changelog, and with the signer its units vmgate-signer.socket and
vmgate-signer.service, which /etc/vmgate/appliance.yaml's tls.signer
points vmgate at (a build without the signer gets neither, nor that
line). The Depends line names the package of every library the
binaries link (dpkg -S: libssl3 for the signer's libcrypto.so.3), and
libcurl3-gnutls, whose libcurl fleet mode loads with dlopen (DLOPENED), at
the upstream version installed here or later. The postinst makes the system
users vmgate and vmgate-signer.
"""

import argparse
import gzip
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
MAINTAINER = "vmgate developers <vmgate@vers.sh>"


def die(msg):
    sys.stderr.write("mkdeb: %s\n" % msg)
    sys.exit(1)


def run(argv, **kw):
    r = subprocess.run(argv, capture_output=True, text=True, **kw)
    if r.returncode:
        die("%s failed: %s" % (" ".join(argv), (r.stderr or r.stdout).strip()))
    return r.stdout


def epoch():
    if "SOURCE_DATE_EPOCH" in os.environ:
        return int(os.environ["SOURCE_DATE_EPOCH"])
    return int(run(["git", "-C", REPO, "log", "-1", "--format=%ct"]).strip() or 0)


def gz(data):
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0,
                       compresslevel=9) as f:
        f.write(data)
    return buf.getvalue()


# ---------------------------------------------------------------- man page

def roff_inline(text):
    text = text.replace("\\", "\\e").replace("-", "\\-")
    text = re.sub(r"`([^`]*)`", r"\\fB\1\\fR", text)
    return text


def roff_line(line):
    """A text line must not start with . or ' (roff requests)."""
    return "\\&" + line if line[:1] in (".", "'") else line


def readme_section(title):
    with open(os.path.join(REPO, "README.md")) as f:
        text = f.read()
    m = re.search(r"^## %s\n(.*?)(?=^## )" % re.escape(title), text, re.M | re.S)
    if not m:
        die("README.md has no '## %s' section" % title)
    return m.group(1).strip("\n")


def manpage(version, date):
    """vmgate(8) from the README's Command line section: fenced blocks are
    the synopsis, tables become tagged paragraphs, the rest paragraphs."""
    out = ['.TH VMGATE 8 "%s" "vmgate %s" "System Administration"' % (date, version),
           ".SH NAME", "vmgate \\- TLS edge proxy for a fleet of virtual machines",
           ".SH SYNOPSIS"]
    lines = readme_section("Command line").split("\n")
    i, described = 0, False
    para = []

    def flush():
        if para:
            out.append(".PP")
            out.extend(roff_line(roff_inline(p)) for p in para)
            para.clear()

    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            flush()
            out.append(".nf")
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                out.append(roff_line(lines[i].replace("\\", "\\e").replace("-", "\\-")))
                i += 1
            out.append(".fi")
            if not described:
                out.append(".SH DESCRIPTION")
                described = True
        elif line.startswith("|"):
            flush()
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                cells = [c.strip() for c in lines[i].strip().strip("|").split("|")]
                rows.append(cells)
                i += 1
            i -= 1
            for cells in rows[2:]:  # header and its rule dropped
                out.append(".TP")
                out.append(roff_line(roff_inline(cells[0])))
                out.append(roff_line(roff_inline(" ".join(cells[1:]))))
        elif not line.strip():
            flush()
        else:
            para.append(line)
        i += 1
    flush()
    out += [".SH FILES", ".TP", "/etc/vmgate/appliance.yaml",
            "the configuration the systemd unit vmgate.service runs",
            ".TP", "/var/lib/vmgate",
            "the service's writable directory (for admin.state_file)",
            ".SH SEE ALSO",
            "/usr/share/doc/vmgate/README.md.gz: every configuration key, the "
            "admin API, the logs."]
    return "\n".join(out) + "\n"


def signer_manpage(version, date):
    """vmgate-signer(8): its usage, and the README's "The signer" section
    as paragraphs and a list."""
    out = ['.TH VMGATE-SIGNER 8 "%s" "vmgate %s" "System Administration"'
           % (date, version), ".SH NAME",
           "vmgate-signer \\- holds vmgate's private keys and signs for it",
           ".SH SYNOPSIS", ".nf",
           "vmgate-signer \\-\\-listen\\-fd N [\\-\\-user NAME] [\\-\\-quiet]",
           "vmgate-signer \\-\\-socket PATH [\\-\\-socket\\-group NAME] "
           "[\\-\\-user NAME] [\\-\\-quiet]",
           ".fi", ".SH DESCRIPTION"]
    para = []

    def flush():
        if para:
            out.append(".PP")
            out.extend(roff_line(roff_inline(p.strip().lstrip("- ")))
                       for p in para)
            para.clear()

    for line in readme_section("The signer: private keys out of vmgate").split("\n"):
        if not line.strip() or line.startswith("- "):
            flush()
        if line.strip():
            para.append(line.replace("**", ""))
    flush()
    out += [".SH FILES", ".TP", "/lib/systemd/system/vmgate-signer.socket",
            "/run/vmgate-signer/signer.sock, mode 0660, owner vmgate-signer, "
            "group vmgate",
            ".TP", "/lib/systemd/system/vmgate-signer.service",
            "runs the signer as vmgate-signer on that socket",
            ".SH SEE ALSO", "vmgate(8)"]
    return "\n".join(out) + "\n"


# -------------------------------------------------------------------- deps

# Libraries vmgate opens with dlopen, which ldd cannot see: libcurl, that
# fleet mode loads when it starts (ctl/etcd.c; not linked, so that its
# OpenSSL libcrypto.so.3 stays out of every gate without a fleet: section).
# Depended on by name: its package brings what it links.
DLOPENED = ["/lib/x86_64-linux-gnu/libcurl-gnutls.so.4"]


def ldd_paths(binary):
    paths = []
    for line in run(["ldd", binary]).splitlines():
        parts = line.split()
        if "=>" in parts:
            j = parts.index("=>")
            if j + 1 < len(parts) and parts[j + 1].startswith("/"):
                paths.append(parts[j + 1])
        elif parts and parts[0].startswith("/"):
            paths.append(parts[0])
    return paths


def depends(*binaries):
    pkgs = {}
    paths = list(DLOPENED)
    for b in binaries:
        paths += ldd_paths(b)
    for path in paths:
        owner = None
        for cand in (path, os.path.realpath(path),
                     "/usr" + path if not path.startswith("/usr/") else path):
            r = subprocess.run(["dpkg", "-S", cand], capture_output=True, text=True)
            if r.returncode == 0:
                owner = r.stdout.split(":")[0].strip()
                break
        if not owner:
            die("no Debian package owns %s" % path)
        ver = run(["dpkg-query", "-W", "-f=${Version}", owner]).strip()
        # the upstream version: any Debian revision of it will do
        pkgs[owner] = re.sub(r"-[^-]*$", "", ver.split(":", 1)[-1])
    return ", ".join("%s (>= %s)" % (p, v) for p, v in sorted(pkgs.items()))


# ----------------------------------------------------------------- package

def main():
    p = argparse.ArgumentParser()
    p.add_argument("--vmgate", required=True)
    p.add_argument("--signer")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    os.umask(0o022)
    mtime = epoch()
    out = run([a.vmgate, "--version"]).split()
    version = out[1] if len(out) > 1 and out[0] == "vmgate" else die(
        "cannot read the version from %s --version" % a.vmgate)
    date = run(["date", "-u", "-d", "@%d" % mtime, "+%Y-%m-%d"]).strip()
    rfc2822 = run(["date", "-u", "-R", "-d", "@%d" % mtime]).strip()

    root = os.path.join(a.out, "root")
    shutil.rmtree(root, ignore_errors=True)
    files = {}  # path in package -> (bytes, mode)

    def add(path, data, mode=0o644):
        files[path] = (data if isinstance(data, bytes) else data.encode(), mode)

    stripped = os.path.join(a.out, "vmgate.stripped")
    os.makedirs(a.out, exist_ok=True)
    run(["strip", "--strip-unneeded", "--remove-section=.comment",
         "--remove-section=.note", "-o", stripped, a.vmgate])
    with open(stripped, "rb") as f:
        add("usr/sbin/vmgate", f.read(), 0o755)
    if a.signer:
        # vmgate starts the vmgate-signer beside it (ctl/signerd.c)
        stripped = os.path.join(a.out, "vmgate-signer.stripped")
        run(["strip", "--strip-unneeded", "--remove-section=.comment",
             "--remove-section=.note", "-o", stripped, a.signer])
        with open(stripped, "rb") as f:
            add("usr/sbin/vmgate-signer", f.read(), 0o755)
        add("usr/share/man/man8/vmgate-signer.8.gz",
            gz(signer_manpage(version, date).encode()))
    with open(os.path.join(HERE, "appliance.yaml"), "rb") as f:
        conf = f.read()
    with open(os.path.join(HERE, "vmgate.service"), "rb") as f:
        unit = f.read()
    if a.signer:
        for name in ("vmgate-signer.socket", "vmgate-signer.service"):
            with open(os.path.join(HERE, name), "rb") as f:
                add("lib/systemd/system/" + name, f.read())
    else:
        # KEY_SIGNER=n: no signer to point at, nor to start
        conf = re.sub(rb"(?m)^  signer: .*\n", b"", conf)
        unit = re.sub(rb" vmgate-signer\.socket", b"", unit)
    add("etc/vmgate/appliance.yaml", conf)
    add("lib/systemd/system/vmgate.service", unit)
    add("usr/share/man/man8/vmgate.8.gz", gz(manpage(version, date).encode()))
    with open(os.path.join(REPO, "README.md"), "rb") as f:
        add("usr/share/doc/vmgate/README.md.gz", gz(f.read()))
    with open(os.path.join(HERE, "copyright"), "rb") as f:
        add("usr/share/doc/vmgate/copyright", f.read())
    add("usr/share/doc/vmgate/changelog.gz", gz((
        "vmgate (%s) unstable; urgency=medium\n\n"
        "  * Built from the vmgate tree (make deb).\n\n"
        " -- %s  %s\n" % (version, MAINTAINER, rfc2822)).encode()))
    # vmgate links BoringSSL from /usr/lib/x86_64-linux-gnu/android, as
    # Debian's own users of android-libboringssl do: through a RUNPATH
    add("usr/share/lintian/overrides/vmgate",
        "vmgate: custom-library-search-path "
        "RUNPATH /usr/lib/x86_64-linux-gnu/android [usr/sbin/vmgate]\n")

    for path, (data, mode) in sorted(files.items()):
        dst = os.path.join(root, path)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        with open(dst, "wb") as f:
            f.write(data)
        os.chmod(dst, mode)
    ctl = os.path.join(root, "DEBIAN")
    os.makedirs(ctl)
    size_kb = sum(len(d) for d, _ in files.values()) // 1024 + 1
    with open(os.path.join(ctl, "control"), "w") as f:
        f.write("Package: vmgate\nVersion: %s\nArchitecture: amd64\n"
                "Maintainer: %s\nInstalled-Size: %d\n"
                "Depends: %s, openssl, passwd\n"
                "Section: net\nPriority: optional\n"
                "Homepage: https://vm.vers.sh/\n"
                "Description: TLS edge proxy for a fleet of virtual machines\n"
                " vmgate terminates TLS, reads the server name, finds the VM and\n"
                " relays plain bytes to it over IPv6: HTTP/1.1, HTTP/2, gRPC,\n"
                " WebSocket and SSH over TLS all pass through. io_uring based.\n"
                % (version, MAINTAINER, size_kb,
                   depends(*[b for b in (a.vmgate, a.signer) if b])))
    with open(os.path.join(ctl, "conffiles"), "w") as f:
        f.write("/etc/vmgate/appliance.yaml\n")
    for script in ("postinst", "prerm", "postrm"):
        shutil.copyfile(os.path.join(HERE, script), os.path.join(ctl, script))
        os.chmod(os.path.join(ctl, script), 0o755)
    with open(os.path.join(ctl, "md5sums"), "w") as f:
        for path, (data, _) in sorted(files.items()):
            if not path.startswith("etc/"):
                f.write("%s  %s\n" % (hashlib.md5(data).hexdigest(), path))
    for d, dirs, fs in os.walk(root):
        for n in dirs + fs:
            os.utime(os.path.join(d, n), (mtime, mtime), follow_symlinks=False)
        os.chmod(d, 0o755)
    os.utime(root, (mtime, mtime))
    deb = os.path.join(a.out, "vmgate_%s_amd64.deb" % version)
    run(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", root, deb],
        env=dict(os.environ, SOURCE_DATE_EPOCH=str(mtime)))
    print("  DEB    %s" % deb)


if __name__ == "__main__":
    main()
