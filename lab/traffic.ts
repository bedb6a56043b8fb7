// Client-side traffic API: each call is one agent process in a namespace, never one `ip netns exec`
// per connection, and every result is attributed to a link by the address the server saw.
import type { AgentMode, AgentProcess } from "./agent-process";
import { DEFAULT_UDP_PORTS, type LinkName } from "./topology";

export type { LinkName };

export interface TrafficContext {
  ns: { lan: string; net: string };
  /** A lab namespace's full name from its key ("gw", "isp1") or full name. */
  resolveNs(ns: string): string;
  serverAddress: string;
  /** The primary server's IPv6 address; undefined in an IPv4-only lab. */
  serverAddress6?: string;
  /** The link whose gateway address this is (what the server sees after NAT), else null. */
  linkOf(address: string | null): LinkName | null;
  /** Starts an agent the lab will kill on destroy. */
  startAgent(ns: string, mode: AgentMode, args: object, maxLifetimeMs: number): AgentProcess;
}

/** Where client traffic starts: a lab namespace key or name. Default "lan" (the LAN client). */
export interface FromOption {
  from?: string;
}

/** Which server a client talks to when `dst` is not given. */
export interface FamilyOption {
  /** 4: the primary server's IPv4 address (192.0.2.10); 6: its IPv6 one (2001:db8:5e::10, dual-stack labs). Default 4. */
  family?: 4 | 6;
}

export interface ConnectOptions extends FromOption, FamilyOption {
  /** Default: the primary server of `family`, 192.0.2.10 (or 2001:db8:5e::10). */
  dst?: string;
  /** Default 80. */
  port?: number;
  /** Connections in flight at once. Default 20. */
  concurrency?: number;
  /** Start at most this many connections per second (spread evenly). Default: as fast as possible. */
  ratePerSec?: number;
  /** Per connection, until the server's first line arrived. Default 1000. */
  connectTimeoutMs?: number;
  /** Source address (e.g. one of lab.lanInfo's client addresses). Default: the kernel's choice. */
  src?: string;
  /** Connection i binds sources[i % sources.length]: many LAN clients from one agent. Overrides src. */
  sources?: string[];
  /**
   * "udp": each connection is one datagram from a socket of its own (a new UDP flow) answered by
   * the server's echo. An ICMP error Linux reports to a UDP socket fails it at once (port
   * unreachable: ECONNREFUSED, prohibited: EHOSTUNREACH); a host unreachable is not one. Default "tcp".
   */
  protocol?: "tcp" | "udp";
  /** Stop starting new connections after this long. Default 60 000. */
  durationLimitMs?: number;
}

export interface ConnectionResult {
  ok: boolean;
  /** The TCP handshake completed (ok additionally needs the server's first line); UDP: the echo came. */
  connected: boolean;
  link: LinkName | null;
  /** The client address the server saw. */
  seenAs: string | null;
  /** The source address the connection was bound to (src, sources); null: the kernel's choice. */
  src: string | null;
  /** Epoch ms (same clock as Date.now() in the test). */
  startedAt: number;
  ms: number;
  error?: string;
}

interface RawConnection {
  ok: boolean;
  connected: boolean;
  seenAs: string | null;
  src: string | null;
  startedAt: number;
  ms: number;
  error?: string;
}

const clientNs = (ctx: TrafficContext, o: FromOption) => (o.from ? ctx.resolveNs(o.from) : ctx.ns.lan);

/** The server address a client uses: `dst`, else the primary server of `family`. */
function serverOf(ctx: TrafficContext, o: FamilyOption & { dst?: string }): string {
  if (o.dst) return o.dst;
  if (o.family !== 6) return ctx.serverAddress;
  if (!ctx.serverAddress6) throw new Error("family 6 needs a dual-stack lab (LabOptions.ipv6)");
  return ctx.serverAddress6;
}

/** The lab's UDP echo and the agent's UDP sockets are IPv4 only. */
function udpV4Only(dst: string): void {
  if (dst.includes(":")) throw new Error(`UDP over IPv6 is not served by the lab (dst ${dst})`);
}

/** Starts an agent and waits for its "ready" event; an agent that never gets ready is killed. */
async function startReady(ctx: TrafficContext, ns: string, mode: AgentMode, args: object, lifetimeMs: number, readyMs: number) {
  const agent = ctx.startAgent(ns, mode, args, lifetimeMs);
  const ready = await agent.waitFor("ready", readyMs).catch(async (e) => {
    await agent.kill();
    throw e;
  });
  return { agent, ready };
}

export async function openConnections(ctx: TrafficContext, n: number, o: ConnectOptions = {}): Promise<ConnectionResult[]> {
  const args = {
    n,
    dst: serverOf(ctx, o),
    port: o.port ?? 80,
    concurrency: o.concurrency ?? 20,
    ratePerSec: o.ratePerSec,
    connectTimeoutMs: o.connectTimeoutMs ?? 1000,
    src: o.src,
    sources: o.sources,
    protocol: o.protocol ?? "tcp",
    durationLimitMs: o.durationLimitMs ?? 60_000,
  };
  if (args.protocol === "udp") udpV4Only(args.dst);
  // Worst case: the duration limit, then the last connections time out and close.
  const bound = args.durationLimitMs + args.connectTimeoutMs + 3000;
  const agent = ctx.startAgent(clientNs(ctx, o), "connect", args, bound);
  try {
    const { results } = (await agent.waitFor("result", bound)) as unknown as { results: RawConnection[] };
    return results.map((r) => ({ ...r, link: ctx.linkOf(r.seenAs) }));
  } finally {
    await agent.kill();
  }
}

/** Fraction of ok results per link, with every link present (0 when unused). */
export function shares(linkNames: readonly string[], results: readonly ConnectionResult[]): Record<string, number> {
  const ok = results.filter((r) => r.ok);
  return Object.fromEntries(linkNames.map((name) => [name, ok.length ? ok.filter((r) => r.link === name).length / ok.length : 0]));
}

export interface LongLivedOptions extends FromOption, FamilyOption {
  /** Default 80. */
  port?: number;
  /** Each connection sends a line this often. Default 200. */
  intervalMs?: number;
  /** Upper bound: the agent stops by itself after this long. Default 30 000. */
  durationMs?: number;
  dst?: string;
  src?: string;
  connectTimeoutMs?: number;
}

export interface LongLivedConnection {
  /** The address the server saw, for the greeting and for each answered message, in order. */
  seen: string[];
  /** Link of the greeting (the link the connection started on). */
  link: LinkName | null;
  /** Every message saw the same, non-empty address. */
  stable: boolean;
  sent: number;
  answered: number;
  closedByPeer: boolean;
  error?: string;
}

export interface LongLivedReport {
  connections: LongLivedConnection[];
  /** Some connection failed to open, errored (e.g. reset) or was closed by the server. */
  errored: boolean;
  /** Some connection has messages that were never answered (e.g. its uplink died silently). */
  stalled: boolean;
}

export interface LongLivedHandle {
  pid: number;
  /** Connections that got the server's greeting. */
  established: number;
  stop(): Promise<LongLivedReport>;
}

/** Opens `count` connections and resolves once each is established or failed. */
export async function longLived(ctx: TrafficContext, count: number, o: LongLivedOptions = {}): Promise<LongLivedHandle> {
  const args = {
    count,
    dst: serverOf(ctx, o),
    port: o.port ?? 80,
    src: o.src,
    intervalMs: o.intervalMs ?? 200,
    durationMs: o.durationMs ?? 30_000,
    connectTimeoutMs: o.connectTimeoutMs ?? 2000,
  };
  const lifetime = args.durationMs + args.connectTimeoutMs + 10_000;
  const { agent, ready } = await startReady(ctx, clientNs(ctx, o), "longlived", args, lifetime, args.connectTimeoutMs + 5000);
  return {
    pid: agent.pid,
    established: Number(ready.established),
    async stop() {
      const { connections } = (await agent.stop()) as unknown as {
        connections: Omit<LongLivedConnection, "link" | "stable">[];
      };
      const out = connections.map((c) => ({
        ...c,
        link: ctx.linkOf(c.seen[0] ?? null),
        stable: c.seen.length > 0 && c.seen.every((a) => a === c.seen[0]),
      }));
      return {
        connections: out,
        errored: out.some((c) => c.error !== undefined || c.closedByPeer),
        stalled: out.some((c) => c.answered < c.sent),
      };
    },
  };
}

export interface UdpFlowOptions extends FromOption {
  /** IPv4 only: the lab serves no UDP over IPv6. */
  /** Default: the first UDP port the server serves (5001). */
  port?: number;
  /** One datagram this often. Default 200. */
  intervalMs?: number;
  /** Upper bound: the agent stops by itself after this long. Default 60 000. */
  durationMs?: number;
  dst?: string;
  src?: string;
}

export interface UdpReply {
  /** Epoch ms of arrival. */
  at: number;
  seq: number;
  seenAs: string;
  link: LinkName | null;
}

export interface UdpFlowReport {
  /** The flow's one client source port. */
  localPort: number | null;
  sent: number;
  replies: UdpReply[];
}

export interface UdpFlowHandle {
  pid: number;
  localPort: number;
  stop(): Promise<UdpFlowReport>;
}

/** One UDP socket (one 5-tuple) sending numbered datagrams: a flow that NAT must keep on one link. */
export async function udpFlow(ctx: TrafficContext, o: UdpFlowOptions = {}): Promise<UdpFlowHandle> {
  const args = {
    dst: o.dst ?? ctx.serverAddress,
    port: o.port ?? DEFAULT_UDP_PORTS[0],
    src: o.src,
    intervalMs: o.intervalMs ?? 200,
    durationMs: o.durationMs ?? 60_000,
  };
  udpV4Only(args.dst);
  const { agent, ready } = await startReady(ctx, clientNs(ctx, o), "udpflow", args, args.durationMs + 10_000, 5000);
  return {
    pid: agent.pid,
    localPort: Number(ready.localPort),
    async stop() {
      const r = (await agent.stop()) as unknown as Omit<UdpFlowReport, "replies"> & { replies: Omit<UdpReply, "link">[] };
      return { localPort: r.localPort, sent: r.sent, replies: r.replies.map((x) => ({ ...x, link: ctx.linkOf(x.seenAs) })) };
    },
  };
}

export interface InboundOptions {
  /** Address to connect to, e.g. the gateway's address on link 2. */
  dst: string;
  port: number;
  /** Source address in the `net` namespace. Default: the primary server address of dst's family. */
  via?: string;
  connectTimeoutMs?: number;
  /**
   * Also send a line and wait for its echo (the lab's listeners echo). Default true; set false when
   * the far end is not a lab listener.
   */
  exchange?: boolean;
}

export interface InboundResult {
  /** Handshake completed and data came back (both ways with `exchange`). */
  ok: boolean;
  connected: boolean;
  /** What the far end saw as our address (its first line's first word). */
  seenAs: string | null;
  ms: number;
  error?: string;
}

/** One TCP connection from the internet server towards the gateway (inbound traffic). */
export async function connectFromServer(ctx: TrafficContext, o: InboundOptions): Promise<InboundResult> {
  const args = {
    n: 1,
    dst: o.dst,
    port: o.port,
    src: o.via ?? serverOf(ctx, { family: o.dst.includes(":") ? 6 : 4 }),
    connectTimeoutMs: o.connectTimeoutMs ?? 2000,
    exchange: o.exchange ?? true,
    durationLimitMs: 1000,
  };
  const bound = args.connectTimeoutMs + 5000;
  const agent = ctx.startAgent(ctx.ns.net, "connect", args, bound);
  try {
    const { results } = (await agent.waitFor("result", bound)) as unknown as { results: RawConnection[] };
    const { ok, connected, seenAs, ms, error } = results[0];
    return { ok, connected, seenAs, ms, ...(error ? { error } : {}) };
  } finally {
    await agent.kill();
  }
}

export interface ListenOptions {
  port: number;
  /** Default 0.0.0.0 (IPv4 only; "::" listens on both families, IPv4 peers then read as plain IPv4). */
  address?: string;
  /** Also answer UDP on the same port. */
  udp?: boolean;
  /** Upper bound on the listener's life. Default 30 min. */
  maxLifetimeMs?: number;
}

export interface ListenerHandle {
  pid: number;
  /** Peer addresses of the TCP connections accepted so far, in order. */
  peers(): string[];
  stop(): Promise<{ peers: string[] }>;
}

/** A lab server (greets with the peer address, echoes lines) in any lab namespace. */
export async function listen(ctx: TrafficContext, ns: string, o: ListenOptions): Promise<ListenerHandle> {
  if (o.udp) udpV4Only(o.address ?? "0.0.0.0");
  const args = {
    addresses: [o.address ?? "0.0.0.0"],
    tcpPorts: [o.port],
    udpPorts: o.udp ? [o.port] : [],
    reportPeers: true,
  };
  const { agent } = await startReady(ctx, ns, "serve", args, o.maxLifetimeMs ?? 30 * 60_000, 5000);
  const peers = () => agent.eventsOf("peer").map((e) => String(e.peer));
  return {
    pid: agent.pid,
    peers,
    async stop() {
      await agent.stop();
      return { peers: peers() };
    },
  };
}
