"""Both deployments (compose and k8s): how many workers, which one archives, and where
state and the archive live."""

from __future__ import annotations

from collections import Counter

from streams.settings import Settings
from tests.support.deploy_files import (
    all_containers,
    deployments,
    k8s_kafka_topics,
    mount_of,
    mounts,
    settings_of,
    workers,
)


def test_workers_of_one_app_are_no_more_than_the_partitions_of_touches() -> None:
    for where, containers in deployments().items():
        replicas: Counter[str] = Counter()
        partitions = {}
        for container in workers(containers):
            settings = settings_of(container)
            replicas[settings.app_id] += container.replicas
            topic = k8s_kafka_topics().get(settings.touches_topic) if where == "k8s" else None
            partitions[settings.app_id] = (
                topic["spec"]["partitions"] if topic else settings.topic_partitions
            )
        idle = {app: n for app, n in replicas.items() if n > partitions[app]}
        assert not idle, f"{where}: workers beyond the partitions of touches idle: {idle}"


def test_exactly_one_process_writes_the_history_archive_and_it_sends_no_webhooks() -> None:
    for containers in deployments().values():
        writers = [c for c in workers(containers) if settings_of(c).history_sink]
        assert sum(c.replicas for c in writers) == 1, [c.where for c in writers]
        assert settings_of(writers[0]).alert_webhook_url is None


def test_the_archiver_has_an_app_id_and_output_topics_of_its_own() -> None:
    def outputs(settings: Settings) -> set[str]:
        return {settings.value_streams_topic, settings.dead_letter_topic, settings.alerts_topic}

    for containers in deployments().values():
        everyone = [settings_of(c) for c in workers(containers)]
        archivers = [s for s in everyone if s.history_sink]
        folders = [s for s in everyone if not s.history_sink]
        for archiver in archivers:
            for folder in folders:
                assert archiver.app_id != folder.app_id
                assert not outputs(archiver) & outputs(folder)


def test_workers_keep_their_state_on_a_volume() -> None:
    for container in workers(all_containers()):
        state_dir = settings_of(container).state_dir
        assert mount_of(state_dir, mounts(container)), f"{container.where}: {state_dir}"


def test_the_dashboard_reads_the_archive_the_archiver_writes() -> None:
    for where, containers in deployments().items():
        (archiver,) = [c for c in workers(containers) if settings_of(c).history_sink]
        dashboards = [c for c in containers if c.subcommand == "serve"]
        path = settings_of(archiver).history_db_path
        volume = mount_of(path, mounts(archiver))
        assert volume and dashboards, f"{archiver.where} writes {path} on no volume"
        for dashboard in dashboards:
            assert settings_of(dashboard).history_db_path == path, dashboard.where
            assert mount_of(path, mounts(dashboard)) == volume, dashboard.where
            # A ReadWriteOnce claim of a StatefulSet is shared within its pod only.
            assert where == "compose" or dashboard.pod is archiver.pod, dashboard.where
