"""Container images for the test node, made without a container engine.

    python3 image.py pause PAUSE_BINARY OUT.tar REF
        the pod sandbox image: one static file, /pause, as the entrypoint
    python3 image.py project BINARY DOCKERFILE OUT.tar REF
        the project's image from a built binary: the binary at /fargate-webhook, every shared library
        `ldd` says it links (and the loader), /etc/passwd and /etc/group naming the non-root user, /tmp;
        the final stage of DOCKERFILE gives the user, entrypoint, command, exposed ports and labels, so
        the image says what the released one says.

Each writes a docker-archive (what `docker save` writes: manifest.json, the config, one layer) that
`ctr images import` reads. The layer is reproducible: fixed owners and times, sorted entries.
"""

import hashlib
import io
import json
import os
import re
import shlex
import subprocess
import sys
import tarfile
import time


def layer(files, dirs=()):
    """A tar of FILES ({path in image: host path}) and DIRS ({path: mode}), bytes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        made = set()

        def parents(path):
            parts = path.strip("/").split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in made:
                    made.add(d)
                    info = tarfile.TarInfo(d)
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)

        for path, mode in sorted(dict(dirs).items()):
            parents(path)
            info = tarfile.TarInfo(path.strip("/") + "/")
            info.type, info.mode = tarfile.DIRTYPE, mode
            made.add(path.strip("/"))
            tar.addfile(info)
        for path, source in sorted(files.items()):
            parents(path)
            if isinstance(source, bytes):
                data, mode = source, 0o644
            else:
                with open(source, "rb") as f:
                    data = f.read()
                mode = os.stat(source).st_mode & 0o755
            info = tarfile.TarInfo(path.strip("/"))
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def write_archive(out, ref, layer_tar, config):
    """A docker-archive at OUT holding one image named REF."""
    diff_id = "sha256:" + hashlib.sha256(layer_tar).hexdigest()
    config = dict(config)
    config.update(
        {
            "architecture": {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine),
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }
    )
    config_json = json.dumps(config, sort_keys=True).encode()
    config_name = hashlib.sha256(config_json).hexdigest() + ".json"
    layer_name = diff_id.split(":")[1] + "/layer.tar"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [ref], "Layers": [layer_name]}]).encode()
    with tarfile.open(out, "w") as tar:
        for name, data in ((config_name, config_json), (layer_name, layer_tar), ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def linked_libraries(binary):
    """{path the loader looks at: host file} for every library BINARY links, the loader included."""
    out = subprocess.run(["ldd", binary], capture_output=True, text=True)
    if out.returncode != 0:
        if "not a dynamic executable" in out.stdout + out.stderr:
            return {}
        sys.exit(f"image.py: ldd {binary} failed: {out.stderr.strip()}")
    libs = {}
    for line in out.stdout.splitlines():
        line = line.strip()
        m = re.match(r"^\S+ => (/\S+) \(0x[0-9a-f]+\)$", line) or re.match(r"^(/\S+) \(0x[0-9a-f]+\)$", line)
        if m:
            libs[m.group(1)] = os.path.realpath(m.group(1))
        elif "not found" in line:
            sys.exit(f"image.py: {binary} links a library that is missing here: {line}")
    return libs


def final_stage(dockerfile):
    """USER, ENTRYPOINT, CMD, EXPOSE and LABELs of the Dockerfile's last stage, ARG defaults applied
    (overridden by the environment: VERSION, GIT_REVISION, CREATED, SOURCE)."""
    text = open(dockerfile).read().replace("\\\n", " ")
    stage = re.split(r"(?m)^FROM\s", text)[-1]
    args = {}
    for m in re.finditer(r"(?m)^ARG\s+(\w+)(?:=(\S*))?", stage):
        args[m.group(1)] = os.environ.get(m.group(1), m.group(2) or "")

    def expand(value):
        return re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), ""), value)

    def directive(name):
        found = re.findall(rf"(?m)^{name}\s+(.*)$", stage)
        return found[-1].strip() if found else None

    config = {}
    if directive("USER"):
        config["User"] = directive("USER")
    for name, key in (("ENTRYPOINT", "Entrypoint"), ("CMD", "Cmd")):
        if directive(name):
            config[key] = json.loads(directive(name))
    if directive("EXPOSE"):
        config["ExposedPorts"] = {p if "/" in p else p + "/tcp": {} for p in directive("EXPOSE").split()}
    labels = {}
    for body in re.findall(r"(?m)^LABEL\s+(.*)$", stage):
        for word in shlex.split(body):
            key, _, value = word.partition("=")
            labels[key] = expand(value)
    config["Labels"] = labels
    return config


def main(argv):
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if len(argv) == 5 and argv[1] == "pause":
        _, _, binary, out, ref = argv
        write_archive(out, ref, layer({"/pause": binary}), {"config": {"Entrypoint": ["/pause"]}, "created": created})
    elif len(argv) == 6 and argv[1] == "project":
        _, _, binary, dockerfile, out, ref = argv
        stage = final_stage(dockerfile)
        user = stage.get("User", "65532:65532").split(":")
        uid, gid = user[0], user[-1]
        files = {"/fargate-webhook": binary}
        files.update(linked_libraries(binary))
        files["/etc/passwd"] = f"root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:{uid}:{gid}:nonroot:/home/nonroot:/sbin/nologin\n".encode()
        files["/etc/group"] = f"root:x:0:\nnonroot:x:{gid}:\n".encode()
        config = {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], **stage}
        write_archive(out, ref, layer(files, {"/tmp": 0o1777}), {"config": config, "created": created})
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
