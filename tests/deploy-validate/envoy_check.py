"""Checks an Envoy bootstrap YAML against Envoy's v3 API types (PyPI xds-protos: the
generated protobuf code of Envoy's data-plane API).

Strict: the document is decoded with protobuf's JSON mapping, which refuses unknown fields,
unknown enum names and malformed well-known types (durations...), inside typed_config
(`@type`) too. Then a subset of the protoc-gen-validate rules the .proto files declare is
checked on what was set: required messages and oneofs, string min_len, repeated min_items,
duration and number bounds. Envoy applies all of them at load; this is not all of them.

Usage: python envoy_check.py FILE.yaml   (exit 0: valid; 1: the reason on stderr)
"""

import importlib
import pkgutil
import sys

import yaml
from google.protobuf import any_pb2, json_format, symbol_database

import envoy  # noqa: F401  (the package whose modules are imported below)
import validate.validate_pb2 as pgv


def import_all():
    # typed_config (google.protobuf.Any) resolves its @type through the default pool: every
    # Envoy message type has to be loaded first.
    for mod in pkgutil.walk_packages(envoy.__path__, "envoy."):
        if mod.name.endswith("_pb2"):
            importlib.import_module(mod.name)


def duration_ns(d):
    return d.seconds * 1_000_000_000 + d.nanos


def ignore_empty(rules):
    kind = rules.WhichOneof("type")
    return kind is not None and getattr(getattr(rules, kind), "ignore_empty", False)


def check_rules(path, field, value, rules, errors):
    if field.message_type is not None and field.message_type.full_name == "google.protobuf.Duration":
        if rules.HasField("duration"):
            r = rules.duration
            v = duration_ns(value)
            if r.HasField("gt") and not v > duration_ns(r.gt):
                errors.append(f"{path}: must be greater than {r.gt.ToJsonString()}")
            if r.HasField("gte") and not v >= duration_ns(r.gte):
                errors.append(f"{path}: must be at least {r.gte.ToJsonString()}")
            if r.HasField("lt") and not v < duration_ns(r.lt):
                errors.append(f"{path}: must be less than {r.lt.ToJsonString()}")
        return
    for kind in ("uint32", "uint64", "int32", "int64", "double"):
        if rules.HasField(kind):
            r = getattr(rules, kind)
            v = value.value if hasattr(value, "value") else value
            if r.HasField("gt") and not v > r.gt:
                errors.append(f"{path}: must be greater than {r.gt}")
            if r.HasField("gte") and not v >= r.gte:
                errors.append(f"{path}: must be at least {r.gte}")
            if r.HasField("lte") and not v <= r.lte:
                errors.append(f"{path}: must be at most {r.lte}")
            if r.HasField("lt") and not v < r.lt:
                errors.append(f"{path}: must be less than {r.lt}")
    if rules.HasField("string") and isinstance(value, str):
        if rules.string.HasField("min_len") and len(value) < rules.string.min_len:
            errors.append(f"{path}: shorter than {rules.string.min_len}")


def walk(msg, path, errors):
    desc = msg.DESCRIPTOR
    if desc.full_name == "google.protobuf.Any":
        if msg.type_url:
            name = msg.type_url.split("/")[-1]
            cls = symbol_database.Default().GetSymbol(name)
            inner = cls()
            msg.Unpack(inner)
            walk(inner, f"{path}<{name}>", errors)
        return
    for oneof in desc.oneofs:
        if oneof.GetOptions().Extensions[pgv.required] and msg.WhichOneof(oneof.name) is None:
            errors.append(f"{path}: one of {[f.name for f in oneof.fields]} is required")
    for field in desc.fields:
        rules = field.GetOptions().Extensions[pgv.rules]
        fpath = f"{path}.{field.name}"
        is_repeated = field.is_repeated
        is_map = is_repeated and field.message_type is not None and field.message_type.GetOptions().map_entry
        if is_repeated:
            items = getattr(msg, field.name)
            if rules.HasField("repeated") and rules.repeated.HasField("min_items"):
                if len(items) < rules.repeated.min_items:
                    errors.append(f"{fpath}: needs at least {rules.repeated.min_items} item(s)")
            if field.message_type is not None and not is_map:
                for i, item in enumerate(items):
                    walk(item, f"{fpath}[{i}]", errors)
            continue
        if field.message_type is not None:
            if not msg.HasField(field.name):
                # A oneof member's rules apply only when it is the one set.
                in_oneof = field.containing_oneof is not None
                required = (rules.HasField("message") and rules.message.required) or (
                    rules.HasField("duration") and rules.duration.required
                )
                if not in_oneof and required:
                    errors.append(f"{fpath}: required")
                continue
            value = getattr(msg, field.name)
            check_rules(fpath, field, value, rules, errors)
            walk(value, fpath, errors)
        else:
            # Scalars are checked set or not, as protoc-gen-validate does (a proto3 scalar
            # has no presence), except a oneof member not chosen and `ignore_empty` rules.
            if field.containing_oneof is not None and not msg.HasField(field.name):
                continue
            value = getattr(msg, field.name)
            if not value and ignore_empty(rules):
                continue
            check_rules(fpath, field, value, rules, errors)


def main():
    import_all()
    from envoy.config.bootstrap.v3 import bootstrap_pb2

    with open(sys.argv[1]) as f:
        doc = yaml.safe_load(f)
    bootstrap = bootstrap_pb2.Bootstrap()
    try:
        json_format.ParseDict(doc, bootstrap)
    except json_format.ParseError as e:
        print(f"{sys.argv[1]}: {e}", file=sys.stderr)
        return 1
    errors = []
    walk(bootstrap, "Bootstrap", errors)
    if errors:
        print(f"{sys.argv[1]}: " + "; ".join(errors), file=sys.stderr)
        return 1
    print(f"{sys.argv[1]}: valid envoy.config.bootstrap.v3.Bootstrap")
    return 0


if __name__ == "__main__":
    sys.exit(main())
