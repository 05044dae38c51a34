"""Pods on nodes, the scheduler, and Cluster Autoscaler: the simulator's cluster.

Why it is shaped like this
--------------------------
The simulation must replay a day in well under 100 ms, so pods are not objects.
Pods of one deployment are identical (same requests, same start-up time), so a
node holds *counts* per kind (web, worker, overprovisioning "pause" pods), split
into starting and Ready; pods that are starting sit in one FIFO per kind as
``[ready_at, node, count]`` batches (start-up time is constant, so FIFO order is
ready order). Nothing here allocates per tick; allocation happens only when pods
or nodes change.

What is modelled, and how it maps to Kubernetes
-----------------------------------------------
* **Scheduling** is first-fit by requests over nodes in creation order, the way
  Cluster Autoscaler's own binpacking estimator places pods. (kube-scheduler's
  default scoring, LeastAllocated, spreads pods instead; first-fit is the
  optimistic case for node scale-down.) Pending pods are retried whenever room
  may have appeared (a node became Ready, pods were deleted). Web and worker
  pods have equal priority; pause pods are preempted (evicted back to Pending)
  when a real pod needs their room, which is how the overprovisioning pattern
  keeps spare capacity warm.
* **Deleting pods** (a scale-down) follows the ReplicaSet controller's ranking:
  unscheduled pods first, then pods not yet Ready (youngest first), then Ready
  pods from the node holding the most pods of that deployment.
* **Cluster Autoscaler scale-up** (every scan): pending pods are binpacked
  (first-fit decreasing) onto the nodes already being provisioned, then onto
  new empty nodes; that many nodes are requested (up to ``max_nodes``) and
  become Ready ``provisioning`` seconds later.
* **Scale-down**: a node whose requested cpu or memory (the larger, daemonsets
  included) is below the threshold, and whose pods all fit on the remaining
  nodes, is *unneeded*; after ``unneeded`` seconds it is removed, unless a
  scale-up happened within ``delay_after_add`` seconds. Empty nodes go in bulk
  (up to 10 a scan), non-empty ones one at a time (``--max-drain-parallelism``
  default 1), never below ``min_nodes``. The pods of a removed node are
  recreated by their ReplicaSets, rescheduled elsewhere and start again: a
  drain costs capacity for one start-up time, as it does in a real cluster.
"""

from __future__ import annotations

from collections import deque

WEB, WORKER, PAUSE = 0, 1, 2
KINDS = (WEB, WORKER, PAUSE)
NEVER = 1 << 62
_MAX_EMPTY_BULK_DELETE = 10


class Node:
    """One node: free room and pod counts per kind."""

    __slots__ = ("alive", "cpu_free", "mem_free", "ready", "starting", "unneeded_since")

    def __init__(self, cpu_free: int, mem_free: int) -> None:
        self.cpu_free = cpu_free
        self.mem_free = mem_free
        self.ready = [0, 0, 0]
        self.starting = [0, 0, 0]
        self.alive = True
        self.unneeded_since = -1

    def pods(self) -> int:
        r, s = self.ready, self.starting
        return r[0] + r[1] + r[2] + s[0] + s[1] + s[2]


class Cluster:
    """Nodes, pending pods and Cluster Autoscaler state. Times are integer seconds."""

    def __init__(
        self,
        *,
        node_cpu: int,
        node_mem: int,
        ds_cpu: int = 0,
        ds_mem: int = 0,
        pod_cpu: tuple[int, int, int],
        pod_mem: tuple[int, int, int],
        startup: tuple[int, int, int],
        min_nodes: int = 0,
        max_nodes: int = 1000,
        provisioning: int = 90,
        threshold: float = 0.5,
        unneeded_time: int = 600,
        delay_after_add: int = 600,
    ) -> None:
        self.node_cpu = node_cpu
        self.node_mem = node_mem
        self.room_cpu = node_cpu - ds_cpu
        self.room_mem = node_mem - ds_mem
        self.pod_cpu = pod_cpu
        self.pod_mem = pod_mem
        self.startup = startup
        self.min_nodes = min_nodes
        self.max_nodes = max_nodes
        self.provisioning_time = provisioning
        self.threshold = threshold
        self.unneeded_time = unneeded_time
        self.delay_after_add = delay_after_add
        self._free_floor = (node_cpu * (1.0 - threshold), node_mem * (1.0 - threshold))
        self.nodes: list[Node] = []
        self.provisioning: deque[int] = deque()  # ready_at, one entry per node
        self.pending = [0, 0, 0]
        self.ready_count = [0, 0, 0]
        self.starting_count = [0, 0, 0]
        self.starting: tuple[deque[list[object]], ...] = (deque(), deque(), deque())
        self.last_scale_up = -NEVER
        self.next_removal = NEVER
        self.dirty = True
        self.scale_ups = 0
        self.nodes_removed = 0

    # --- views -----------------------------------------------------------

    @property
    def total_nodes(self) -> int:
        return len(self.nodes) + len(self.provisioning)

    @property
    def pending_total(self) -> int:
        p = self.pending
        return p[0] + p[1] + p[2]

    def next_ready_time(self) -> int:
        t = NEVER
        for q in self.starting:
            if q and q[0][0] < t:  # type: ignore[operator]
                t = q[0][0]  # type: ignore[assignment]
        return t

    def utilization(self, node: Node) -> float:
        cpu = (self.node_cpu - node.cpu_free) / self.node_cpu if self.node_cpu else 0.0
        mem = (self.node_mem - node.mem_free) / self.node_mem if self.node_mem else 0.0
        return cpu if cpu > mem else mem

    # --- set-up ----------------------------------------------------------

    def nodes_for(self, pods: list[int], upcoming: int = 0) -> int:
        """How many new empty nodes fit ``pods`` (count per kind) besides ``upcoming`` empty ones.

        First-fit decreasing (biggest requests first), like CA's binpacking estimator.
        """
        bins: list[list[int]] = [[self.room_cpu, self.room_mem] for _ in range(upcoming)]
        order = sorted(KINDS, key=lambda k: (self.pod_cpu[k], self.pod_mem[k]), reverse=True)
        for kind in order:
            n = pods[kind]
            c, m = self.pod_cpu[kind], self.pod_mem[kind]
            if n <= 0:
                continue
            for b in bins:
                k = min(n, b[0] // c if c else n, b[1] // m if m else n)
                if k > 0:
                    b[0] -= k * c
                    b[1] -= k * m
                    n -= k
                    if n == 0:
                        break
            per = min(self.room_cpu // c if c else n, self.room_mem // m if m else n)
            while n > 0:
                k = min(n, per)
                bins.append([self.room_cpu - k * c, self.room_mem - k * m])
                n -= k
        return len(bins) - upcoming

    def start(self, replicas: tuple[int, int, int], nodes: int | None = None) -> None:
        """The cluster at time 0: ``nodes`` Ready nodes (default: just enough) and Ready pods."""
        needed = max(self.min_nodes, self.nodes_for(list(replicas)))
        count = needed if nodes is None else max(nodes, self.min_nodes)
        for _ in range(min(count, self.max_nodes)):
            self.nodes.append(Node(self.room_cpu, self.room_mem))
        for kind in KINDS:
            self.pending[kind] = replicas[kind]
        self.schedule(0)
        for kind in KINDS:  # initial pods are already running
            for node in self.nodes:
                node.ready[kind] += node.starting[kind]
                node.starting[kind] = 0
            self.ready_count[kind] += self.starting_count[kind]
            self.starting_count[kind] = 0
            self.starting[kind].clear()
        self.dirty = True

    # --- pods --------------------------------------------------------------

    def add_pods(self, kind: int, n: int, now: int) -> None:
        self.pending[kind] += n
        self.schedule(now)

    def remove_pods(self, kind: int, n: int, now: int) -> None:
        """Delete ``n`` pods of ``kind`` in the ReplicaSet controller's order."""
        take = min(self.pending[kind], n)
        self.pending[kind] -= take
        n -= take
        c, m = self.pod_cpu[kind], self.pod_mem[kind]
        q = self.starting[kind]
        while n > 0 and q:
            batch = q[-1]
            node: Node = batch[1]  # type: ignore[assignment]
            if not node.alive:
                q.pop()
                continue
            k = min(n, batch[2])  # type: ignore[call-overload]
            batch[2] = batch[2] - k
            if batch[2] == 0:
                q.pop()
            node.starting[kind] -= k
            node.cpu_free += k * c
            node.mem_free += k * m
            self.starting_count[kind] -= k
            n -= k
            self.dirty = True
        if n > 0 and self.ready_count[kind] > 0:
            nodes = self.nodes
            counts = [node.ready[kind] for node in nodes]
            last = len(counts) - 1
            while n > 0 and self.ready_count[kind] > 0:
                # one pod from the node holding the most (the last of equals)
                most = max(counts)
                assert most > 0
                i = last - counts[::-1].index(most)
                counts[i] -= 1
                best = nodes[i]
                best.ready[kind] -= 1
                best.cpu_free += c
                best.mem_free += m
                self.ready_count[kind] -= 1
                n -= 1
                self.dirty = True
        if self.pending_total:
            self.schedule(now)

    def _place(self, node: Node, kind: int, k: int, now: int) -> None:
        node.cpu_free -= k * self.pod_cpu[kind]
        node.mem_free -= k * self.pod_mem[kind]
        if kind == PAUSE:  # placeholders do nothing: Ready at once
            node.ready[kind] += k
            self.ready_count[kind] += k
        else:
            node.starting[kind] += k
            self.starting_count[kind] += k
            q = self.starting[kind]
            ready_at = now + self.startup[kind]
            last = q[-1] if q else None
            if last is not None and last[0] == ready_at and last[1] is node:
                last[2] += k  # type: ignore[operator]
            else:
                q.append([ready_at, node, k])
        self.dirty = True

    def schedule(self, now: int) -> None:
        """kube-scheduler: place pending pods first-fit; real pods may preempt pause pods."""
        for kind in KINDS:
            n = self.pending[kind]
            if n == 0:
                continue
            c, m = self.pod_cpu[kind], self.pod_mem[kind]
            for node in self.nodes:
                k = min(n, node.cpu_free // c if c else n, node.mem_free // m if m else n)
                if k > 0:
                    self._place(node, kind, k, now)
                    n -= k
                    if n == 0:
                        break
            if n > 0 and kind != PAUSE and self.ready_count[PAUSE] > 0:
                n -= self._preempt(kind, n, now)
            self.pending[kind] = n

    def _preempt(self, kind: int, n: int, now: int) -> int:
        c, m = self.pod_cpu[kind], self.pod_mem[kind]
        pc, pm = self.pod_cpu[PAUSE], self.pod_mem[PAUSE]
        placed = 0
        for node in self.nodes:
            while placed < n and node.ready[PAUSE] > 0:
                # evict the fewest pause pods that make room for one more pod
                evict = 0
                while evict < node.ready[PAUSE] and (
                    node.cpu_free + evict * pc < c or node.mem_free + evict * pm < m
                ):
                    evict += 1
                if node.cpu_free + evict * pc < c or node.mem_free + evict * pm < m:
                    break
                node.ready[PAUSE] -= evict
                node.cpu_free += evict * pc
                node.mem_free += evict * pm
                self.ready_count[PAUSE] -= evict
                self.pending[PAUSE] += evict
                self._place(node, kind, 1, now)
                placed += 1
            if placed == n:
                break
        return placed

    def advance(self, now: int) -> None:
        """Pods whose start-up has elapsed become Ready."""
        for kind in (WEB, WORKER):
            q = self.starting[kind]
            while q and q[0][0] <= now:  # type: ignore[operator]
                _, node, k = q.popleft()
                if node.alive:  # type: ignore[attr-defined]
                    node.starting[kind] -= k  # type: ignore[attr-defined]
                    node.ready[kind] += k  # type: ignore[attr-defined]
                    self.starting_count[kind] -= k  # type: ignore[operator]
                    self.ready_count[kind] += k  # type: ignore[operator]

    # --- nodes / Cluster Autoscaler ------------------------------------------

    def nodes_ready(self, now: int) -> None:
        q = self.provisioning
        added = False
        while q and q[0] <= now:
            q.popleft()
            self.nodes.append(Node(self.room_cpu, self.room_mem))
            added = True
        if added:
            self.dirty = True
            if self.pending_total:
                self.schedule(now)

    def scan(self, now: int) -> None:
        """One Cluster Autoscaler loop: scale up for pending pods, else maybe scale down."""
        if self.pending_total:
            want = self.nodes_for(self.pending, upcoming=len(self.provisioning))
            room = self.max_nodes - self.total_nodes
            add = min(want, room)
            if add > 0:
                ready_at = now + self.provisioning_time
                self.provisioning.extend([ready_at] * add)
                self.last_scale_up = now
                self.scale_ups += 1
                return
        if self.dirty:
            self._update_unneeded(now)
        if now < self.next_removal or now < self.last_scale_up + self.delay_after_add:
            return
        self._remove_unneeded(now)

    def _update_unneeded(self, now: int) -> None:
        """Mark nodes under the threshold whose pods all fit on the other nodes."""
        self.dirty = False
        nodes = self.nodes
        # under the threshold on both cpu and memory <=> free above (1 - threshold) of allocatable
        cpu_floor, mem_floor = self._free_floor
        cands = [n for n in nodes if n.cpu_free > cpu_floor and n.mem_free > mem_floor]
        if not cands:
            for node in nodes:
                node.unneeded_since = -1
            self.next_removal = NEVER
            return
        if len(cands) > 1:
            cands.sort(key=self.utilization)
        # room left on the nodes that took the pods of the nodes chosen so far (by identity)
        free: dict[Node, tuple[int, int]] = {}
        chosen: set[Node] = set()
        pod_cpu, pod_mem = self.pod_cpu, self.pod_mem
        for cand in cands:
            trial: dict[Node, tuple[int, int]] = {}
            ready, starting = cand.ready, cand.starting
            for kind in KINDS:
                n = ready[kind] + starting[kind]
                if n == 0:
                    continue
                c, m = pod_cpu[kind], pod_mem[kind]
                for other in nodes:
                    if other is cand or other in chosen:
                        continue
                    fc, fm = trial.get(other) or free.get(other) or (other.cpu_free, other.mem_free)
                    k = min(n, fc // c if c else n, fm // m if m else n)
                    if k > 0:
                        trial[other] = (fc - k * c, fm - k * m)
                        n -= k
                        if n == 0:
                            break
                if n > 0:
                    break
            else:  # every pod fits elsewhere
                free.update(trial)
                chosen.add(cand)
        nxt = NEVER
        unneeded_time = self.unneeded_time
        for node in nodes:
            if node in chosen:
                if node.unneeded_since < 0:
                    node.unneeded_since = now
                due = node.unneeded_since + unneeded_time
                if due < nxt:
                    nxt = due
            else:
                node.unneeded_since = -1
        self.next_removal = nxt

    def _remove_unneeded(self, now: int) -> None:
        budget = self.total_nodes - self.min_nodes
        if budget <= 0:
            return
        due = [n for n in self.nodes if n.unneeded_since >= 0 and n.unneeded_since + self.unneeded_time <= now]
        empty = [n for n in due if n.pods() == 0][:_MAX_EMPTY_BULK_DELETE]
        victims = empty[:budget]
        if not victims:
            busy = [n for n in due if n.pods() > 0]
            victims = busy[:1]
        if not victims:
            return
        for node in victims:
            self._drain(node)
        self.nodes_removed += len(victims)
        self.dirty = True
        self._update_unneeded(now)
        if self.pending_total:
            self.schedule(now)

    def _drain(self, node: Node) -> None:
        node.alive = False
        self.nodes.remove(node)
        for kind in KINDS:
            self.pending[kind] += node.ready[kind] + node.starting[kind]
            self.ready_count[kind] -= node.ready[kind]
            self.starting_count[kind] -= node.starting[kind]
