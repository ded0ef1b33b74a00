"""Expands a SAM template into CloudFormation JSON offline, as `sam deploy`
would have it transformed: local CodeUri/ContentUri become S3 locations (as
`sam package` makes them), managed policies are not looked up (the template
names none by short name). Used by tests/scripts/template-check.sh.

    python sam-expand.py infra/template.yaml > expanded.json
"""
import json
import sys

from samcli.yamlhelper import yaml_parse
from samtranslator.translator.transform import transform


class NoManagedPolicyLookup:
    """The translator asks IAM for managed policy ARNs only for policies
    named by short name; this template names none, so nothing is looked up."""

    def load(self):
        return {}


def main(path):
    with open(path) as f:
        template = yaml_parse(f.read())
    for name, resource in template.get("Resources", {}).items():
        props = resource.get("Properties") or {}
        for key in ("CodeUri", "ContentUri"):
            if isinstance(props.get(key), str) and not props[key].startswith("s3://"):
                props[key] = f"s3://packaged/{name}.zip"
    json.dump(transform(template, {}, NoManagedPolicyLookup()), sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv[1])
