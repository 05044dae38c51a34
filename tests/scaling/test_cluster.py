"""Pods on nodes, the scheduler and Cluster Autoscaler, step by step."""

from __future__ import annotations

from shiftover.scaling.cluster import PAUSE, WEB, WORKER, Cluster


def cluster(**kw: int | float) -> Cluster:
    args: dict[str, int | float] = {
        "node_cpu": 2000,
        "node_mem": 8192,
        "min_nodes": 1,
        "max_nodes": 10,
        "provisioning": 90,
        "unneeded_time": 600,
        "delay_after_add": 600,
    }
    args.update(kw)
    return Cluster(
        pod_cpu=(1000, 500, 1000),
        pod_mem=(1024, 512, 1024),
        startup=(20, 10, 0),
        **args,  # type: ignore[arg-type]
    )


def test_start_places_ready_pods_on_just_enough_nodes() -> None:
    c = cluster()
    c.start((5, 0, 0))
    assert len(c.nodes) == 3  # 2 web pods per node
    assert c.ready_count == [5, 0, 0]
    assert [n.ready[WEB] for n in c.nodes] == [2, 2, 1]


def test_first_fit_then_pending_then_ready_after_startup() -> None:
    c = cluster()
    c.start((1, 0, 0))
    c.add_pods(WEB, 3, now=100)
    assert c.starting_count[WEB] == 1 and c.pending[WEB] == 2
    c.advance(119)
    assert c.ready_count[WEB] == 1
    c.advance(120)
    assert c.ready_count[WEB] == 2


def test_scale_up_asks_for_enough_nodes_once() -> None:
    c = cluster()
    c.start((2, 0, 0))
    c.add_pods(WEB, 5, now=0)
    assert c.pending[WEB] == 5
    c.scan(10)
    assert list(c.provisioning) == [100, 100, 100]  # 5 pods, 2 per node
    c.scan(20)  # the same pending pods fit the nodes on their way
    assert len(c.provisioning) == 3
    c.nodes_ready(100)
    assert c.pending[WEB] == 0 and len(c.nodes) == 4
    assert c.starting_count[WEB] == 5


def test_scale_up_respects_max_nodes() -> None:
    c = cluster(max_nodes=2)
    c.start((2, 0, 0))
    c.add_pods(WEB, 10, now=0)
    c.scan(0)
    assert c.total_nodes == 2


def test_mixed_pods_are_binpacked_biggest_first() -> None:
    c = cluster()
    assert c.nodes_for([1, 2, 0]) == 1  # 1 cpu + 2 x 0.5 cpu on one 2-cpu node
    assert c.nodes_for([3, 1, 0]) == 2
    assert c.nodes_for([3, 0, 0], upcoming=1) == 1


def test_replicaset_deletes_pending_then_starting_then_ready_from_the_fullest_node() -> None:
    c = cluster(max_nodes=10)
    c.start((3, 0, 0))  # nodes: [2, 1]
    c.add_pods(WEB, 2, now=0)  # 1 starts on node 2, 1 pending
    assert c.pending[WEB] == 1 and c.starting_count[WEB] == 1
    c.remove_pods(WEB, 1, now=5)
    assert c.pending[WEB] == 0 and c.starting_count[WEB] == 1
    c.remove_pods(WEB, 1, now=5)
    assert c.starting_count[WEB] == 0 and c.ready_count[WEB] == 3
    c.remove_pods(WEB, 1, now=5)
    assert [n.ready[WEB] for n in c.nodes] == [1, 1]  # from the node with 2


def test_unneeded_empty_nodes_go_after_ten_minutes_in_bulk() -> None:
    c = cluster(min_nodes=1)
    c.start((6, 0, 0))
    c.remove_pods(WEB, 5, now=0)
    c.scan(0)
    assert len(c.nodes) == 3
    c.scan(590)
    assert len(c.nodes) == 3
    c.scan(600)
    assert len(c.nodes) == 1
    assert c.ready_count[WEB] == 1


def test_busy_underused_node_is_drained_one_at_a_time_and_pods_restart() -> None:
    c = cluster(node_cpu=4000, node_mem=16384, min_nodes=1)
    c.start((8, 0, 0))  # two full nodes (4 each)
    c.remove_pods(WEB, 2, now=0)  # from the first (fullest, last among ties)
    c.remove_pods(WEB, 3, now=0)
    # 3 pods left on 2 nodes, each under 50 %: one can take the other's pods
    c.scan(0)
    c.scan(600)
    assert len(c.nodes) == 1
    assert c.ready_count[WEB] + c.starting_count[WEB] == 3
    assert c.starting_count[WEB] >= 1  # evicted pods start again on the other node
    c.advance(620)
    assert c.ready_count[WEB] == 3


def test_no_scale_down_within_delay_after_add() -> None:
    c = cluster(min_nodes=0)
    c.start((1, 0, 0))
    c.add_pods(WEB, 2, now=0)
    c.scan(0)  # scale-up at 0
    c.nodes_ready(90)
    c.remove_pods(WEB, 3, now=95)
    c.scan(100)
    c.scan(599)
    assert len(c.nodes) == 2
    c.scan(700)
    assert len(c.nodes) == 0


def test_min_nodes_is_kept() -> None:
    c = cluster(min_nodes=2)
    c.start((4, 0, 0))
    c.remove_pods(WEB, 4, now=0)
    c.scan(0)
    c.scan(10_000)
    assert len(c.nodes) == 2


def test_real_pods_preempt_pause_pods_which_then_trigger_scale_up() -> None:
    c = cluster()
    c.start((2, 0, 2))  # one node of web, one node of pause pods
    assert len(c.nodes) == 2 and c.ready_count[PAUSE] == 2
    c.add_pods(WEB, 2, now=0)
    assert c.pending[WEB] == 0 and c.starting_count[WEB] == 2
    assert c.pending[PAUSE] == 2 and c.ready_count[PAUSE] == 0
    c.scan(0)
    assert len(c.provisioning) == 1  # a new warm node for the displaced pause pods


def test_worker_pods_share_nodes() -> None:
    c = cluster()
    c.start((1, 2, 0))
    assert len(c.nodes) == 1
    assert c.nodes[0].cpu_free == 0
    c.add_pods(WORKER, 1, now=0)
    assert c.pending[WORKER] == 1
