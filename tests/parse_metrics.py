"""Reads a Prometheus text exposition on stdin with the Prometheus project's
own Python parser (prometheus_client) and prints its samples as JSON, one
object per sample: the family's name and type, the sample's name, labels
and value. tests/api/metrics.rs runs it, so the exposition is checked by a
real parser rather than by ours."""

import json
import math
import sys

from prometheus_client.parser import text_string_to_metric_families

samples = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for sample in family.samples:
        value = sample.value
        samples.append({
            "family": family.name,
            "type": family.type,
            "name": sample.name,
            "labels": sample.labels,
            "value": None if math.isinf(value) or math.isnan(value) else value,
        })
json.dump(samples, sys.stdout)
