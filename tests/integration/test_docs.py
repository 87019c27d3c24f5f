#!/usr/bin/env python3
"""The shipped settings file and the man pages against the programs: every
key tcpd knows is in etc/tcpd.ini with its default and in tcpd.ini(5), and
every command and option of the --help texts is in the man pages."""

import os
import re
import subprocess

from tcpdtest import TCPCTL, TCPD, TIMEOUT, check, main, run_config_check

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
EXAMPLE = os.path.join(ROOT, "etc", "tcpd.ini")
INI_PAGE = os.path.join(ROOT, "man", "tcpd.ini.5")
TCPD_PAGE = os.path.join(ROOT, "man", "tcpd.8")
TCPCTL_PAGE = os.path.join(ROOT, "man", "tcpctl.8")


def read(path):
    with open(path) as f:
        return f.read()


def settings(p):
    """--check-config's output without its first line, which names the file."""
    check(p.returncode == 0, f"--check-config exited {p.returncode}: {p.stderr}")
    lines = p.stdout.splitlines()
    check(lines and lines[0].startswith("# effective settings"), p.stdout)
    return lines[1:]


def default_keys():
    """(section, key) of every setting --check-config prints."""
    p, _ = run_config_check("# defaults only\n")
    keys, section = [], None
    for line in settings(p):
        m = re.match(r"^\[(\w+)\]$", line)
        if m:
            section = m.group(1)
            continue
        m = re.match(r"^(\w+) =", line)
        if m:
            keys.append((section, m.group(1)))
    check(len(keys) > 10 and section, f"too few keys in --check-config's output: {keys}")
    return keys


def help_entries(program, heading):
    """The first word of each line of the --help text under heading, up to a blank line."""
    p = subprocess.run([program, "--help"], capture_output=True, text=True, timeout=TIMEOUT)
    check(p.returncode == 0, f"{program} --help exited {p.returncode}")
    lines = p.stdout.splitlines()
    check(heading in lines, f"no '{heading}' in {program} --help:\n{p.stdout}")
    entries = []
    for line in lines[lines.index(heading) + 1:]:
        if not line.strip():
            break
        if len(line) - len(line.lstrip()) > 8:  # the rest of the entry above
            continue
        entries.append(line.split()[0].rstrip(",").split("=")[0])
        if line.split()[0].endswith(","):  # "-s, --socket=PATH": the long name too
            entries.append(line.split()[1].split("=")[0])
    check(entries, f"nothing under '{heading}' in {program} --help")
    return entries


def test_example_settings_are_the_defaults():
    p = subprocess.run([TCPD, "--check-config", "-c", EXAMPLE], capture_output=True, text=True, timeout=TIMEOUT)
    shipped = settings(p)
    p, _ = run_config_check("# defaults only\n")
    defaults = settings(p)
    diff = [f"{a!r} != {b!r}" for a, b in zip(shipped, defaults) if a != b]
    check(shipped == defaults, "etc/tcpd.ini is not the defaults: " + "; ".join(diff or ["lengths differ"]))


def test_every_key_in_the_example_with_a_comment():
    lines = read(EXAMPLE).splitlines()
    section = None
    where = {}
    for i, line in enumerate(lines):
        m = re.match(r"^\[(\w+)\]$", line)
        if m:
            section = m.group(1)
        m = re.match(r"^(\w+)\s*=", line)
        if m:
            where[(section, m.group(1))] = i
    for section, key in default_keys():
        check((section, key) in where, f"[{section}] {key} is missing from etc/tcpd.ini")
        i = where[(section, key)]
        check(i > 0 and lines[i - 1].startswith("# "),
              f"[{section}] {key} in etc/tcpd.ini has no comment line of its own above it")


def test_every_key_in_tcpd_ini_5():
    page = read(INI_PAGE)
    for section, key in default_keys():
        check(re.search(rf"^\.It Cm {key}( |$)", page, re.M), f"[{section}] {key} has no '.It Cm {key}' in tcpd.ini(5)")


def test_every_tcpctl_command_and_option_in_tcpctl_8():
    page = read(TCPCTL_PAGE)
    for cmd in help_entries(TCPCTL, "Commands:"):
        check(re.search(rf"^\.It Cm {cmd}( |$)", page, re.M), f"tcpctl {cmd} has no '.It Cm {cmd}' in tcpctl(8)")
    for heading in ("Options:", "SELECTION, for list and kick (every one given must hold):", "Options of list:",
                    "Options of kick:", "Options of probe:"):
        for opt in help_entries(TCPCTL, heading):
            check(("Fl " + opt.lstrip("-")) in page if not opt.startswith("--") else
                  ("Fl \\-" + opt[2:]) in page, f"tcpctl option {opt} is not in tcpctl(8)")


def test_every_status_line_in_tcpctl_8():
    """Every line tcpctl status can print ("workers:", "refused by:", ...)
    is described in tcpctl(8): a daemon set up so that all of them show."""
    import socket
    import time
    from tcpdtest import Daemon, activated, free_port, refused
    page = read(TCPCTL_PAGE)
    port = free_port()
    d = Daemon("[tcpd]\nallow = 127.0.0.0/8\ndeny = 127.0.0.9\nmax_connection_rate = 100/s\n"
               "max_lifetime = 1h\nmax_connections_per_source = 50\n[echo]\nlisten = 127.0.0.1:1234\n",
               activate=[f"127.0.0.1:{port}"], fdnames=["echo"], wait_ready=False)

    s = activated(d, port)
    check(refused(port, source="127.0.0.9"), "a refusal, for the 'refused by:' line")
    with open(d.config, "a") as f:
        f.write("[tcpd]\nbacklog = lots\n")
    d.ctl("reload", ok=(1,))  # the settings: line
    out = d.ctl("status").stdout
    labels = {m.group(1) for m in re.finditer(r"^([a-z][a-z ]*):\s", out, re.M)}
    check({"listening", "not bound", "settings", "services", "connections", "refused by", "workers", "traffic",
           "limits", "allow", "deny"} <= labels, f"not every line showed: {sorted(labels)}\n{out}")
    for label in sorted(labels):
        check(f"Li {label}:\\&" in page, f"tcpctl status prints '{label}:', which tcpctl(8) does not describe")
    s.close()
    d.stop()


def test_every_tcpd_option_in_tcpd_8():
    page = read(TCPD_PAGE)
    for opt in help_entries(TCPD, "Options:"):
        check(("Fl " + opt.lstrip("-")) in page if not opt.startswith("--") else
              ("Fl \\-" + opt[2:]) in page, f"tcpd option {opt} is not in tcpd(8)")


if __name__ == "__main__":
    main([test_example_settings_are_the_defaults, test_every_key_in_the_example_with_a_comment,
          test_every_key_in_tcpd_ini_5, test_every_tcpctl_command_and_option_in_tcpctl_8,
          test_every_tcpd_option_in_tcpd_8, test_every_status_line_in_tcpctl_8])
