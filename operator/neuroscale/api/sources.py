"""Where weights come from: the hf:// and s3:// source patterns every model, draft and adapter field shares."""

from __future__ import annotations

from neuroscale.api.schema import Rule

# hf://org/name or s3://bucket/prefix: the two places a Neuron engine can load weights from.
MODEL_SOURCE = r"^(hf://[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*|s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^\s]*)?)$"
S3_URI = r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^\s]*)?$"


def revision_rule(what: str) -> Rule:
    """A Hub revision names a version of a Hub repository; an S3 prefix is already one version."""
    return Rule("!has(self.revision) || self.source.startsWith('hf://')",
                f"{what} revision applies to hf:// sources only")
