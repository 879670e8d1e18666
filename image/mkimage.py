#!/usr/bin/python3
"""Builds the vmgate appliance image from Debian packages (make image).

  mkimage.py kernel      --config .config --out DIR
      apt-get download the kernel package Kconfig names and the versioned
      package it depends on, unpack them into DIR/kernel (never installed)
  mkimage.py initramfs   --config .config --out DIR --vmgate BIN
                         [--signer BIN]
      DIR/vmlinuz and DIR/initramfs.img: busybox-static as init, the
      scripts of image/rootfs, the kernel modules of the Kconfig module
      sets with their dependencies, vmgate (and vmgate-signer beside it,
      with the system user it runs as) and the shared libraries they
      link or load (libcurl for fleet mode: DLOPENED), as a sorted newc cpio with fixed timestamps, gzip'd
  mkimage.py efi         --config .config --out DIR
      DIR/vmgate.efi: systemd-boot's stub + kernel + initramfs + command
      line (objcopy: Debian 12 has no ukify)
  mkimage.py disk        --config .config --out DIR
      DIR/vmgate-disk.img: GPT, an EFI system partition with systemd-boot
      and vmgate.efi in slots A and B, VMGATECFG (FAT), VMGATEDATA (blank:
      the appliance formats it on first boot)
  mkimage.py config-disk CONFIG OUT [--network FILE]
      a VMGATECFG FAT image holding CONFIG as appliance.yaml and the files
      it names (mtools: no mount, no root)

Every step is reproducible: same tree and same packages, same bytes.
Timestamps are SOURCE_DATE_EPOCH (default: the kernel package's).
"""

import argparse
import glob
import gzip
import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
BUSYBOX = "/bin/busybox"
SD_STUB = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub"
SD_BOOT = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi"

# What every image has: virtio disks, network and entropy, the config and
# data file systems, the ACPI power button (and evdev, through which acpid
# sees it). ext4's checksums ask the crypto
# API for crc32c at run time, which modules.dep does not list.
MODULES_BASE = ["virtio_pci", "virtio_blk", "virtio_net", "virtio_rng",
                "virtio_scsi", "sd_mod", "vfat", "nls_cp437", "nls_ascii",
                "nls_utf8", "crc32c_generic", "crc32c_intel", "ext4", "button",
                "evdev"]
# The appliance's users: vmgate runs as root (it drops its capabilities
# itself), vmgate-signer (Kconfig KEY_SIGNER) as a user of its own, which
# can read nothing of root's. glibc reads them from these files (nss_files
# is in libc.so.6 since 2.34); nothing logs in, so there is no shadow.
SIGNER_UID = 100
PASSWD = ("root:x:0:0:root:/root:/bin/sh\n"
          "vmgate-signer:x:%d:%d:vmgate-signer:/nonexistent:/bin/false\n"
          % (SIGNER_UID, SIGNER_UID))
GROUP = "root:x:0:\nvmgate-signer:x:%d:\n" % SIGNER_UID
# hosts: /etc/hosts first, then the name servers the network set-up
# writes to /etc/resolv.conf (glibc without the line would ask DNS first
# and /etc/hosts only when DNS is unavailable).
NSSWITCH = "passwd: files\ngroup: files\nhosts: files dns\n"
HOSTS = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"

# Kconfig IMAGE_MODULES_BAREMETAL: NVMe, AHCI and common server NICs.
MODULES_BAREMETAL = ["nvme", "ahci", "ata_piix", "e1000", "e1000e", "igb",
                     "igc", "ixgbe", "i40e", "ice", "bnxt_en", "tg3",
                     "r8169", "mlx4_en", "mlx5_core", "vmxnet3", "ena"]


def die(msg):
    sys.stderr.write("mkimage: %s\n" % msg)
    sys.exit(1)


def run(argv, **kw):
    try:
        return subprocess.run(argv, check=True, capture_output=True,
                              text=True, **kw).stdout
    except subprocess.CalledProcessError as e:
        die("%s failed (exit %d): %s" % (" ".join(argv), e.returncode,
                                           (e.stderr or e.stdout).strip()))
    except FileNotFoundError:
        die("%s: not installed (make image installs its Debian packages "
            "with apt-get, which needs root)" % argv[0])


def epoch(out=None):
    """The one timestamp of every file in the image: SOURCE_DATE_EPOCH, else
    the kernel package's (what dpkg-deb -x gave vmlinuz), so that it
    follows the packages and not when or where the build ran."""
    if "SOURCE_DATE_EPOCH" in os.environ:
        return int(os.environ["SOURCE_DATE_EPOCH"])
    if out:
        tree, kver = kernel_tree(out)
        return int(os.stat(os.path.join(tree, "boot", "vmlinuz-" + kver)).st_mtime)
    try:
        return int(subprocess.run(["git", "-C", REPO, "log", "-1", "--format=%ct"],
                                  check=True, capture_output=True,
                                  text=True).stdout.strip())
    except (subprocess.CalledProcessError, ValueError, FileNotFoundError):
        return 0


def kconfig(path):
    """build/.config as a dict; strings unquoted, unset bools absent."""
    conf = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line.startswith("CONFIG_") or "=" not in line:
                continue
            k, v = line.split("=", 1)
            if v.startswith('"'):
                v = v[1:-1].replace('\\"', '"').replace("\\\\", "\\")
            conf[k[len("CONFIG_"):]] = v
    return conf


def cmdline(conf):
    args = ["console=tty0"]
    if conf.get("IMAGE_SERIAL_CONSOLE"):
        args.append("console=" + conf["IMAGE_SERIAL_CONSOLE"])
    if conf.get("IMAGE_CMDLINE_EXTRA"):
        args.append(conf["IMAGE_CMDLINE_EXTRA"])
    return " ".join(args)


# ------------------------------------------------------------------ kernel

def apt_field(pkg, field):
    out = run(["apt-cache", "show", "--no-all-versions", pkg])
    for line in out.splitlines():
        if line.startswith(field + ": "):
            return line[len(field) + 2:]
    return ""


def cmd_kernel(a):
    conf = kconfig(a.config)
    meta = conf.get("IMAGE_KERNEL_PACKAGE") or die("IMAGE_KERNEL_PACKAGE is empty")
    dep = [d.split()[0] for d in apt_field(meta, "Depends").split(",")
           if d.strip().startswith("linux-image-")]
    if not dep:
        die("%s depends on no linux-image-* package" % meta)
    pkg = dep[0]
    ver = apt_field(pkg, "Version")
    pkgs = os.path.join(a.out, "pkgs")
    os.makedirs(pkgs, exist_ok=True)
    deb = os.path.join(pkgs, "%s_%s_amd64.deb" % (pkg, ver.replace(":", "%3a")))
    if not os.path.exists(deb):
        for old in glob.glob(os.path.join(pkgs, "*.deb")):
            os.unlink(old)
        print("  APT-DL %s %s %s" % (meta, pkg, ver))
        run(["apt-get", "download", meta, pkg], cwd=pkgs)
    if not os.path.exists(deb):
        die("apt-get download left no %s" % deb)
    tree = os.path.join(a.out, "kernel")
    shutil.rmtree(tree, ignore_errors=True)
    run(["dpkg-deb", "-x", deb, tree])
    with open(os.path.join(tree, "package"), "w") as f:
        f.write("%s %s\n" % (pkg, ver))


def kernel_tree(out):
    tree = os.path.join(out, "kernel")
    vers = sorted(os.listdir(os.path.join(tree, "lib", "modules")))
    if len(vers) != 1:
        die("%s: expected one kernel, found %s" % (tree, vers))
    return tree, vers[0]


# --------------------------------------------------------------- initramfs

def modname(path):
    return os.path.basename(path)[:-len(".ko")].replace("-", "_")


def resolve_modules(moddir, wanted):
    """Module files (relative to moddir) for wanted and their dependencies,
    each after what it depends on."""
    index = {}
    for root, _, files in os.walk(os.path.join(moddir, "kernel")):
        for fn in files:
            if fn.endswith(".ko"):
                index[modname(fn)] = os.path.relpath(os.path.join(root, fn), moddir)
    builtin = set()
    bpath = os.path.join(moddir, "modules.builtin")
    if os.path.exists(bpath):
        with open(bpath) as f:
            builtin = {modname(l.strip()) for l in f if l.strip()}
    order, seen = [], set()

    def visit(name, chain):
        name = name.replace("-", "_")
        if name in seen or name in builtin:
            return
        if name in chain:
            die("module dependency loop: %s" % " -> ".join(chain + [name]))
        if name not in index:
            die("module %s is not in this kernel (%s)" % (name, moddir))
        deps = run(["modinfo", "-F", "depends", os.path.join(moddir, index[name])]).strip()
        for d in sorted(filter(None, deps.split(","))):
            visit(d, chain + [name])
        seen.add(name)
        order.append(index[name])

    for w in wanted:
        visit(w, [])
    return order


def elf_libs(binary):
    """The shared libraries binary links, as (path the loader uses, file)."""
    libs = []
    for line in run(["ldd", binary]).splitlines():
        parts = line.split()
        if "=>" in parts:
            i = parts.index("=>")
            if i + 1 < len(parts) and parts[i + 1].startswith("/"):
                libs.append(parts[i + 1])
        elif parts and parts[0].startswith("/"):
            libs.append(parts[0])
    if not libs:
        die("ldd found no libraries for %s" % binary)
    return sorted(set(libs))


# Libraries vmgate opens with dlopen, which ldd cannot see: libcurl, that
# fleet mode loads when it starts (ctl/etcd.c: not linked, so that its
# OpenSSL libcrypto.so.3 stays out of every gate without a fleet: section).
# An appliance's config partition may hold a fleet configuration like any
# host's, so the image carries it and what it links, found as the dynamic
# loader would (ldconfig's cache).
DLOPENED = {"libcurl-gnutls.so.4": "libcurl3-gnutls"}


def dlopened_libs():
    cache = run(["/sbin/ldconfig", "-p"])
    libs = []
    for name, pkg in sorted(DLOPENED.items()):
        m = re.search(r"^\s*%s \(libc6,x86-64\) => (/\S+)$" % re.escape(name), cache, re.M)
        if not m:
            die("%s (fleet mode loads it) is not installed: apt-get install %s" % (name, pkg))
        libs += [m.group(1)] + elf_libs(m.group(1))
    return sorted(set(libs))


class Tree:
    """The initramfs contents: path -> (mode, data or link target, rdev)."""

    def __init__(self):
        self.entries = {}

    def dir(self, path):
        path = path.strip("/")
        parts = path.split("/")
        for i in range(1, len(parts) + 1):
            self.entries.setdefault("/".join(parts[:i]), (stat.S_IFDIR | 0o755, b"", 0))

    def file(self, path, data, mode):
        path = path.strip("/")
        self.dir(os.path.dirname(path)) if "/" in path else None
        self.entries[path] = (stat.S_IFREG | mode, data, 0)

    def copy(self, path, src, mode=None):
        with open(src, "rb") as f:
            data = f.read()
        if mode is None:
            mode = 0o755 if os.stat(src).st_mode & 0o111 else 0o644
        self.file(path, data, mode)

    def link(self, path, target):
        path = path.strip("/")
        self.dir(os.path.dirname(path)) if "/" in path else None
        self.entries.setdefault(path, (stat.S_IFLNK | 0o777, target.encode(), 0))

    def chardev(self, path, major, minor, mode):
        path = path.strip("/")
        self.dir(os.path.dirname(path))
        self.entries[path] = (stat.S_IFCHR | mode, b"", (major, minor))

    def cpio(self, mtime):
        """newc, sorted by path, owner root, one timestamp, inodes in order."""
        out = bytearray()

        def entry(name, mode, data, rdev, ino):
            nm = name.encode() + b"\0"
            maj, mnr = rdev if rdev else (0, 0)
            nlink = 2 if stat.S_ISDIR(mode) else 1
            hdr = "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X" % (
                ino, mode, 0, 0, nlink, mtime, len(data), 0, 0, maj, mnr,
                len(nm), 0)
            out.extend(hdr.encode() + nm)
            out.extend(b"\0" * (-len(out) % 4))
            out.extend(data)
            out.extend(b"\0" * (-len(out) % 4))

        for ino, name in enumerate(sorted(self.entries), start=1):
            mode, data, rdev = self.entries[name]
            entry(name, mode, data, rdev, ino)
        entry("TRAILER!!!", 0, b"", 0, 0)
        out.extend(b"\0" * (-len(out) % 512))
        return bytes(out)


def write_gzip(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0,
                           compresslevel=9) as gz:
            gz.write(data)
    os.replace(tmp, path)


def cmd_initramfs(a):
    conf = kconfig(a.config)
    tree_dir, kver = kernel_tree(a.out)
    moddir = os.path.join(tree_dir, "lib", "modules", kver)
    wanted = list(MODULES_BASE)
    if conf.get("IMAGE_MODULES_BAREMETAL") == "y":
        wanted += MODULES_BAREMETAL
    wanted += conf.get("IMAGE_MODULES_EXTRA", "").split()
    mods = resolve_modules(moddir, wanted)

    t = Tree()
    for d in ["dev", "proc", "sys", "run", "tmp", "config", "data", "root",
              "etc", "lib/modules/" + kver]:
        t.dir(d)
    t.chardev("dev/console", 5, 1, 0o600)
    t.chardev("dev/null", 1, 3, 0o666)
    t.copy("bin/busybox", BUSYBOX, 0o755)
    for applet in sorted(run([BUSYBOX, "--list-full"]).split()):
        t.link(applet, "/bin/busybox")
    t.link("init", "/bin/busybox")
    t.link("bin/sh", "/bin/busybox")

    rootfs = os.path.join(HERE, "rootfs")
    for root, _, files in os.walk(rootfs):
        for fn in files:
            src = os.path.join(root, fn)
            t.copy(os.path.relpath(src, rootfs), src)
    t.file("etc/vmgate/image.conf", (
        "# from Kconfig (build/.config) when the image was built\n"
        "NET_DEFAULT=%s\n" % ("dhcp" if conf.get("IMAGE_NET_DHCP") == "y" else "none")
    ).encode(), 0o644)
    version = run([a.vmgate, "--version"]).splitlines()[0].strip()
    t.file("etc/vmgate/version", (version + "\n").encode(), 0o644)
    t.file("etc/vmgate/modules", "".join(m + "\n" for m in mods).encode(), 0o644)
    for m in mods:
        t.copy("lib/modules/%s/%s" % (kver, m), os.path.join(moddir, m), 0o644)

    # vmgate, symbols kept, debug info dropped (it holds build paths)
    stripped = os.path.join(a.out, "vmgate.stripped")
    run(["strip", "--strip-debug", "-o", stripped, a.vmgate])
    t.copy("usr/bin/vmgate", stripped, 0o755)
    libs = set(elf_libs(a.vmgate)) | set(dlopened_libs())
    # vmgate starts the vmgate-signer beside it (Kconfig KEY_SIGNER): it
    # links OpenSSL's libcrypto.so.3, and drops to its own user.
    t.file("etc/passwd", PASSWD.encode(), 0o644)
    t.file("etc/group", GROUP.encode(), 0o644)
    t.file("etc/nsswitch.conf", NSSWITCH.encode(), 0o644)
    t.file("etc/hosts", HOSTS.encode(), 0o644)
    if a.signer:
        stripped = os.path.join(a.out, "vmgate-signer.stripped")
        run(["strip", "--strip-debug", "-o", stripped, a.signer])
        t.copy("usr/bin/vmgate-signer", stripped, 0o755)
        libs |= set(elf_libs(a.signer))
    # /data's file system: ext4 with a journal, checked before every mount
    # (busybox's mke2fs makes ext2 alone, and busybox has no fsck): the
    # e2fsprogs programs, apart from busybox's applets
    for name in ("e2fsck", "mke2fs"):
        src = os.path.join("/sbin", name)
        if not os.access(src, os.X_OK):
            die("%s: not installed (e2fsprogs)" % src)
        t.copy("usr/lib/vmgate/" + name, src, 0o755)
        libs |= set(elf_libs(src))
    t.copy("etc/mke2fs.conf", "/etc/mke2fs.conf", 0o644)
    for lib in sorted(libs):
        t.copy(lib, os.path.realpath(lib), 0o755)

    data = t.cpio(epoch(a.out))
    write_gzip(os.path.join(a.out, "initramfs.img"), data)
    shutil.copyfile(os.path.join(tree_dir, "boot", "vmlinuz-" + kver),
                    os.path.join(a.out, "vmlinuz"))
    with open(os.path.join(a.out, "cmdline"), "w") as f:
        f.write(cmdline(conf) + "\n")
    print("  IMAGE  %s/initramfs.img: Linux %s, %d modules, %d files, %d KiB" % (
        a.out, kver, len(mods), len(t.entries), os.path.getsize(
            os.path.join(a.out, "initramfs.img")) >> 10))


# --------------------------------------------------------------------- efi

def cmd_efi(a):
    conf = kconfig(a.config)
    tree_dir, kver = kernel_tree(a.out)
    stage = os.path.join(a.out, "efi-stage")
    os.makedirs(stage, exist_ok=True)
    osrel = os.path.join(stage, "os-release")
    with open(osrel, "w") as f:
        f.write('NAME="vmgate appliance"\nID=vmgate\nPRETTY_NAME="vmgate appliance (%s)"\n'
                'VERSION_ID="%s"\n' % (kver, kver))
    cmd = os.path.join(stage, "cmdline")
    with open(cmd, "w") as f:
        f.write(cmdline(conf))
    linux = os.path.join(a.out, "vmlinuz")
    initrd = os.path.join(a.out, "initramfs.img")
    # section addresses above the stub's own (it ends near 0x1a000)
    linux_vma = 0x2000000
    initrd_vma = (linux_vma + os.path.getsize(linux) + 0xfffff) & ~0xfffff
    out = os.path.join(a.out, "vmgate.efi")
    # -p keeps the stub's PE timestamp (0), instead of the time of the build
    run(["objcopy", "-p",
         "--add-section", ".osrel=" + osrel, "--change-section-vma", ".osrel=0x20000",
         "--add-section", ".cmdline=" + cmd, "--change-section-vma", ".cmdline=0x30000",
         "--add-section", ".linux=" + linux, "--change-section-vma",
         ".linux=0x%x" % linux_vma,
         "--add-section", ".initrd=" + initrd, "--change-section-vma",
         ".initrd=0x%x" % initrd_vma,
         SD_STUB, out + ".tmp"])
    # -p also dated the file like the stub: make must see it as new
    os.utime(out + ".tmp")
    os.replace(out + ".tmp", out)
    print("  EFI    %s (%d KiB, cmdline '%s')" % (out, os.path.getsize(out) >> 10,
                                                   cmdline(conf)))


# -------------------------------------------------------------------- disk

MiB = 1 << 20
GUID_ESP = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
GUID_DATA = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"
GUID_LINUX = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"


def fixed_uuid(name):
    """A stable UUID per name, so that the disk image is reproducible."""
    h = hashlib.sha256(b"vmgate-disk:" + name.encode()).hexdigest()
    return "%s-%s-4%s-8%s-%s" % (h[:8], h[8:12], h[13:16], h[17:20], h[20:32])


def mkfat(path, size_mib, label, volid):
    if os.path.exists(path):
        os.unlink(path)
    args = ["mkfs.vfat", "-C", "--invariant", "-i", volid, "-n", label]
    if size_mib >= 64:
        args += ["-F", "32"]
    run(args + [path, str(size_mib * 1024)])


def mcopy(img, src, dst, mtime):
    """Copy src into the FAT image img at dst, with mtime as its time."""
    os.utime(src, (mtime, mtime))
    run(["mcopy", "-o", "-m", "-i", img, src, "::" + dst],
        env=dict(os.environ, MTOOLS_SKIP_CHECK="1", SOURCE_DATE_EPOCH=str(mtime)))


def mmd(img, path, mtime):
    run(["mmd", "-i", img, "::" + path],
        env=dict(os.environ, MTOOLS_SKIP_CHECK="1", SOURCE_DATE_EPOCH=str(mtime)))


def cmd_disk(a):
    conf = kconfig(a.config)
    mtime = epoch(a.out)
    stage = os.path.join(a.out, "disk-stage")
    shutil.rmtree(stage, ignore_errors=True)
    os.makedirs(stage)
    efi = os.path.join(a.out, "vmgate.efi")
    esp_mib = max(64, (2 * os.path.getsize(efi) + 2 * MiB) * 5 // 4 // MiB + 1)
    cfg_mib = int(conf.get("IMAGE_CONFIG_MB", "16"))
    data_mib = int(conf.get("IMAGE_DATA_MB", "256"))

    esp = os.path.join(stage, "esp.img")
    mkfat(esp, esp_mib, "VMGATEESP", "1e5a0001")
    for d in ["/EFI", "/EFI/BOOT", "/EFI/systemd", "/EFI/Linux", "/loader"]:
        mmd(esp, d, mtime)
    boot = os.path.join(stage, "BOOTX64.EFI")
    shutil.copyfile(SD_BOOT, boot)
    mcopy(esp, boot, "/EFI/BOOT/BOOTX64.EFI", mtime)
    mcopy(esp, boot, "/EFI/systemd/systemd-bootx64.efi", mtime)
    slot = os.path.join(stage, "slot.efi")
    shutil.copyfile(efi, slot)
    mcopy(esp, slot, "/EFI/Linux/vmgate-a.efi", mtime)
    mcopy(esp, slot, "/EFI/Linux/vmgate-b.efi", mtime)
    loader = os.path.join(stage, "loader.conf")
    with open(loader, "w") as f:
        f.write("# slot A boots unless told otherwise: write the new image to\n"
                "# the other slot, then point default at it\n"
                "default vmgate-a.efi\ntimeout 0\neditor no\n")
    mcopy(esp, loader, "/loader/loader.conf", mtime)

    cfg = os.path.join(stage, "cfg.img")
    mkfat(cfg, cfg_mib, "VMGATECFG", "1e5a0002")
    readme = os.path.join(stage, "README.TXT")
    with open(readme, "w") as f:
        f.write("Put appliance.yaml here, with the files it names (and\n"
                "optionally a 'network' file): see README.md, Appliance image.\n")
    mcopy(cfg, readme, "/README.TXT", mtime)

    parts = [("EFI system", GUID_ESP, esp_mib, esp),
             ("VMGATECFG", GUID_DATA, cfg_mib, cfg),
             ("VMGATEDATA", GUID_LINUX, data_mib, None)]
    total = 1 + sum(p[2] for p in parts) + 1
    out = os.path.join(a.out, "vmgate-disk.img")
    tmp = out + ".tmp"
    with open(tmp, "wb") as f:
        f.truncate(total * MiB)
    script = ["label: gpt", "label-id: " + fixed_uuid("disk"),
              "unit: sectors", "first-lba: 2048"]
    start = 1
    for name, typ, size, _ in parts:
        script.append("start=%d, size=%d, type=%s, uuid=%s, name=\"%s\"" % (
            start * 2048, size * 2048, typ, fixed_uuid(name), name))
        start += size
    run(["sfdisk", "--no-reread", "--no-tell-kernel", "-q", tmp],
        input="\n".join(script) + "\n")
    start = 1
    with open(tmp, "r+b") as f:
        for _, _, size, img in parts:
            if img:
                with open(img, "rb") as src:
                    f.seek(start * MiB)
                    shutil.copyfileobj(src, f, MiB)
            start += size
    os.replace(tmp, out)
    shutil.rmtree(stage)
    print("  DISK   %s (%d MiB: ESP %d, VMGATECFG %d, VMGATEDATA %d)" % (
        out, total, esp_mib, cfg_mib, data_mib))


# ------------------------------------------------------------- config disk

def config_files(path):
    """The files appliance.yaml names, relative to it (absolute ones, such
    as a state file under /data, are not the config disk's)."""
    import yaml
    try:
        with open(path) as f:
            doc = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError) as e:
        die("%s: %s" % (path, e))
    def section(d, key):
        v = d.get(key) if isinstance(d, dict) else None
        return v if isinstance(v, dict) else {}

    # Every key whose value vmgate opens as a file (ctl/config: the
    # ld_get_file calls): the certificates, the admin token, the client
    # CAs, fleet mode's etcd credentials.
    names = []
    for c in section(doc, "tls").get("certificates") or []:
        for k in ("cert", "key", "ocsp"):
            if isinstance(c, dict) and c.get(k):
                names.append(str(c[k]))
    admin = section(doc, "admin")
    if admin.get("token_file"):
        names.append(str(admin["token_file"]))
    for d in doc.get("domains") or []:
        ca = section(d, "client_auth").get("ca")
        if ca:
            names.append(str(ca))
    fleet = section(doc, "fleet")
    etcd = section(fleet, "etcd")
    for k in ("password_file", "ca_file", "cert_file", "key_file"):
        if etcd.get(k):
            names.append(str(etcd[k]))
    state = admin.get("state_file")
    if admin and not (state and str(state).startswith("/data/")):
        sys.stderr.write("config-disk: warning: admin.state_file is not under "
                         "/data: the config partition is read-only, so API "
                         "changes cannot be kept\n")
    snap = fleet.get("snapshot_file")
    if fleet and not (snap and str(snap).startswith("/data/")):
        sys.stderr.write("config-disk: warning: fleet.snapshot_file is not "
                         "under /data: the config partition is read-only, so "
                         "the fleet's routes cannot be kept for a start "
                         "without etcd\n")
    files = []
    for n in names:
        # /config is where this disk is mounted: its files come from here.
        if n.startswith("/config/"):
            n = n[len("/config/"):]
        elif os.path.isabs(n):
            if not n.startswith("/data/"):
                sys.stderr.write("config-disk: warning: %s is outside the "
                                 "appliance's /config and /data: vmgate will "
                                 "not find it there\n" % n)
            continue
        if ".." in n.split("/"):
            die("%s: %s leaves the configuration's folder" % (path, n))
        files.append(n)
    return sorted(set(files))


def cmd_config_disk(a):
    base = os.path.dirname(os.path.abspath(a.config_file))
    files = config_files(a.config_file)
    srcs = [(os.path.abspath(a.config_file), "appliance.yaml")]
    srcs += [(os.path.join(base, n), n) for n in files]
    if a.network:
        srcs.append((os.path.abspath(a.network), "network"))
    for src, _ in srcs:
        if not os.path.isfile(src):
            die("%s: no such file (named by %s)" % (src, a.config_file))
    size = sum(os.path.getsize(s) for s, _ in srcs)
    mkfat(a.out, max(4, size * 2 // MiB + 2), "VMGATECFG", "1e5a0003")
    mtime = epoch()
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
    made = set()
    for src, dst in srcs:
        d = os.path.dirname(dst)
        parts = d.split("/") if d else []
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            if sub not in made:
                mmd(a.out, "/" + sub, mtime)
                made.add(sub)
        run(["mcopy", "-o", "-i", a.out, src, "::/" + dst], env=env)
    print("  CFGDISK %s: %s" % (a.out, " ".join(d for _, d in srcs)))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("kernel", "initramfs", "efi", "disk"):
        s = sub.add_parser(name)
        s.add_argument("--config", required=True)
        s.add_argument("--out", required=True)
        if name == "initramfs":
            s.add_argument("--vmgate", required=True)
            s.add_argument("--signer")
    s = sub.add_parser("config-disk")
    s.add_argument("config_file")
    s.add_argument("out")
    s.add_argument("--network")
    a = p.parse_args()
    os.umask(0o022)
    {"kernel": cmd_kernel, "initramfs": cmd_initramfs, "efi": cmd_efi,
     "disk": cmd_disk, "config-disk": cmd_config_disk}[a.cmd](a)


if __name__ == "__main__":
    main()
