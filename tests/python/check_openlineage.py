"""Checks the hub's OpenLineage run events against OpenLineage's own model.

Reads one event per line (JSON) from the file named first, and the hub's facet schema
(schemas/lineage/facets.json) named second. Each event is rebuilt, member by member, with the
classes of the official Python client (openlineage-python, generated from the OpenLineage JSON
schemas): a member the spec does not have fails the constructor, a missing required one too,
and the client's validators check the run id, times and URIs. The rebuilt event, serialised by
the client, must equal what the hub sent (so every `_schemaURL` names the facet version the
spec has). The hub's own facets are checked against their JSON Schema. Prints "ok N" or the
first problem, naming the event and the member, and exits 1.
"""

import copy
import json
import sys

import jsonschema
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import (
    column_lineage_dataset,
    job_type_job,
    parent_run,
    schema_dataset,
)
from openlineage.client.serde import Serde

OURS = {
    "lienthong_audit": "AuditRunFacet",
    "lienthong_purpose": "PurposeRunFacet",
    "lienthong_schema": "EventSchemaDatasetFacet",
}


def head(facet):
    """A standard facet's members without the two the client sets itself."""
    members = dict(facet)
    producer = members.pop("_producer")
    members.pop("_schemaURL")
    return producer, members


def run_facet(name, facet):
    if name == "parent":
        producer, m = head(facet)
        return parent_run.ParentRunFacet(
            run=parent_run.Run(**m.pop("run")),
            job=parent_run.Job(**m.pop("job")),
            producer=producer,
            **m,
        )
    return facet


def job_facet(name, facet):
    if name == "jobType":
        producer, m = head(facet)
        return job_type_job.JobTypeJobFacet(producer=producer, **m)
    raise ValueError(f"job facet {name} is not one the hub sends")


def dataset_facet(name, facet):
    if name == "schema":
        producer, m = head(facet)
        fields = [schema_dataset.SchemaDatasetFacetFields(**f) for f in m.pop("fields")]
        return schema_dataset.SchemaDatasetFacet(fields=fields, producer=producer, **m)
    if name == "columnLineage":
        producer, m = head(facet)
        fields = {
            out: column_lineage_dataset.Fields(
                inputFields=[
                    column_lineage_dataset.InputField(
                        transformations=[
                            column_lineage_dataset.Transformation(**t)
                            for t in i.pop("transformations")
                        ],
                        **i,
                    )
                    for i in lineage.pop("inputFields")
                ],
                **lineage,
            )
            for out, lineage in m.pop("fields").items()
        }
        return column_lineage_dataset.ColumnLineageDatasetFacet(
            fields=fields, producer=producer, **m
        )
    return facet


def dataset(cls, d):
    d = dict(d)
    facets = {k: dataset_facet(k, v) for k, v in d.pop("facets", {}).items()}
    return cls(namespace=d.pop("namespace"), name=d.pop("name"), facets=facets, **d)


def rebuild(e):
    e = dict(e)
    e.pop("schemaURL")
    run = dict(e.pop("run"))
    job = dict(e.pop("job"))
    return RunEvent(
        eventType=RunState(e.pop("eventType")),
        run=Run(
            runId=run.pop("runId"),
            facets={k: run_facet(k, v) for k, v in run.pop("facets").items()},
            **run,
        ),
        job=Job(
            namespace=job.pop("namespace"),
            name=job.pop("name"),
            facets={k: job_facet(k, v) for k, v in job.pop("facets").items()},
            **job,
        ),
        inputs=[dataset(InputDataset, d) for d in e.pop("inputs")],
        outputs=[dataset(OutputDataset, d) for d in e.pop("outputs")],
        **e,
    )


def without_empty(value):
    """The client writes empty lists and maps it defaults to; the hub leaves them out."""
    if isinstance(value, dict):
        return {k: without_empty(v) for k, v in value.items() if v not in ([], {})}
    if isinstance(value, list):
        return [without_empty(v) for v in value]
    return value


def our_facets(event):
    yield from event["run"]["facets"].items()
    for d in event["inputs"] + event["outputs"]:
        yield from d.get("facets", {}).items()


def main():
    events = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
    schema = json.load(open(sys.argv[2]))
    checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
    for n, event in enumerate(events):
        where = f"event {n} ({event.get('job', {}).get('name')})"
        try:
            rebuilt = without_empty(Serde.to_dict(rebuild(copy.deepcopy(event))))
        except (TypeError, ValueError, KeyError) as error:
            print(f"{where}: not an OpenLineage run event: {error!r}")
            return 1
        if rebuilt != event:
            print(f"{where}: the OpenLineage client reads it otherwise:")
            print(json.dumps(event, sort_keys=True))
            print(json.dumps(rebuilt, sort_keys=True))
            return 1
        for name, facet in our_facets(event):
            if name not in OURS:
                continue
            definition = {"$ref": f"#/$defs/{OURS[name]}", "$defs": schema["$defs"]}
            errors = list(
                jsonschema.Draft202012Validator(definition, format_checker=checker).iter_errors(
                    facet
                )
            )
            if errors:
                print(f"{where}: facet {name}: {errors[0].message}")
                return 1
    print(f"ok {len(events)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
