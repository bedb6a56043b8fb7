// A lab of network namespaces as unforgiving as the internet: a LAN client, the gateway under test,
// one ISP router per uplink (BCP38, no NAT) and an "internet" server that knows no route to the LAN.
//
//   lan (eth0) ── (lan0) gw (wanI) ── (cpe0) ispI (up0) ── (ispI) net [192.0.2.1/.10/.20]
//
// With `ipv6`, every namespace is dual-stack (2001:db8::/32 only; see topology.ts): each link also
// has an IPv6 network and a delegated /64 that its ISP routes to the gateway, and the server also
// listens on 2001:db8:5e::10/::20.
//
// Everything the lab creates is named from its prefix and removed by destroy(), which withLab()
// always runs.
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { AgentProcess, type AgentMode } from "./agent-process";
import { BackgroundProcess } from "./background";
import { isRunning, nsArgv, run, type ExecOptions, type ExecResult } from "./exec";
import {
  BCP38_CHAIN6,
  BROKEN_RULE,
  CLIENT_IF,
  DEFAULT_TCP_PORTS,
  DEFAULT_UDP_PORTS,
  DELAYED_ECHO_MARK,
  ISP_CUSTOMER_IF,
  SERVER_ADDRESSES,
  SERVER_ADDRESSES6,
  delayedEchoRule,
  earlySysctls,
  echoLossRule,
  inPrefix6,
  ip6Routes,
  ipBatches,
  ispRules,
  ispRules6,
  lateSysctls,
  planTopology,
  vethLines,
  type Ipv6Plan,
  type LanInfo,
  type LinkInfo,
  type Topology,
} from "./topology";
import * as traffic from "./traffic";

export type { BackgroundProcess } from "./background";
export type { ExecResult, ExecOptions } from "./exec";
export type { LanInfo, LinkInfo, ProviderLan6 } from "./topology";
export { hostIn6, inPrefix6, mapPrefix6 } from "./topology";
export type * from "./traffic";

export interface LabOptions {
  /** Uplinks, 1..4. Default 2. */
  links?: number;
  /** Must start with "mwt-" (tests) or "mwl-" (the built-in lab). Default: "mwt-" + 6 random characters. */
  prefix?: string;
  /** The LAN is 198.18.<lanIndex>.0/24. Default 1. */
  lanIndex?: number;
  /** Where the scratch directory goes. Default: the system's temp directory. */
  parent?: string;
  /** TCP ports served on both server addresses. Default 22, 25, 80, 443, 8080, 5001. */
  tcpPorts?: number[];
  /** UDP echo ports on both server addresses. Default 5001. */
  udpPorts?: number[];
  /**
   * Dual stack: IPv6 next to IPv4 everywhere (the server's TCP ports on 2001:db8:5e::10 and ::20
   * too; UDP stays IPv4). `{ lanFrom: ["isp2"] }` also numbers the LAN from those links' delegated
   * prefixes (for nat6 "none"). Default: IPv4 only, IPv6 disabled in every namespace.
   */
  ipv6?: boolean | Ipv6Plan;
}

export interface EchoImpairment {
  /** Milliseconds added to the round trip of every answered echo. */
  delayMs?: number;
  /** Share of the echo requests lost on the way, at random. */
  lossPercent?: number;
}

export interface LabNamespaces {
  gw: string;
  lan: string;
  net: string;
  [isp: `isp${number}`]: string;
}

/** What impairEchoes put in place on a link: the ISP router's loss rule, the late responder and its rule. */
interface Impairment {
  loss?: string[];
  delay?: { responder: BackgroundProcess; rule: string[]; ms: number };
}

const SERVER_LIFETIME_MS = 60 * 60_000;
const ECHO_DELAY = path.join(__dirname, "echo-delay.py");
const ECHO_DELAY_LIFETIME_MS = 30 * 60_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class Lab {
  readonly prefix: string;
  readonly ns: LabNamespaces;
  readonly links: readonly LinkInfo[];
  readonly lanInfo: LanInfo;
  /** The primary "internet" server, 192.0.2.10. */
  readonly serverAddress = SERVER_ADDRESSES.primary;
  readonly serverAddresses = SERVER_ADDRESSES;
  /** The lab is dual-stack (LabOptions.ipv6). The *6 addresses below are served only then. */
  readonly ipv6: boolean;
  /** The primary server's IPv6 address, 2001:db8:5e::10. */
  readonly serverAddress6 = SERVER_ADDRESSES6.primary;
  readonly serverAddresses6 = SERVER_ADDRESSES6;
  /** IPv6 probe target (answers ping only), 2001:db8:5e::1. */
  readonly probe6 = SERVER_ADDRESSES6.probe;
  readonly tcpPorts: readonly number[];
  readonly udpPorts: readonly number[];

  private readonly topology: Topology;
  /** Every process the lab started that may still run: agents and spawn()ed ones. */
  private readonly processes = new Set<BackgroundProcess>();
  private readonly broken = new Set<string>();
  private readonly impairments = new Map<string, Impairment>();
  /** Client addresses addClientAddresses added so far. */
  private addedClients = 0;
  private readonly created: string[] = [];
  private destroyed = false;
  private scratch = "";
  private readonly parent: string;

  constructor(options: LabOptions = {}) {
    const prefix = options.prefix ?? `mwt-${randomBytes(3).toString("hex")}`;
    const ipv6 = options.ipv6 === true ? {} : options.ipv6 || undefined;
    this.topology = planTopology(prefix, options.links ?? 2, options.lanIndex ?? 1, ipv6);
    const t = this.topology;
    this.prefix = prefix;
    this.ns = { gw: t.ns.gw, lan: t.ns.lan, net: t.ns.net };
    t.links.forEach((l, i) => (this.ns[l.name] = t.ns.isp[i]));
    this.links = t.links;
    this.lanInfo = t.lan;
    this.ipv6 = t.ipv6;
    this.tcpPorts = options.tcpPorts ?? DEFAULT_TCP_PORTS;
    this.udpPorts = options.udpPorts ?? DEFAULT_UDP_PORTS;
    this.parent = options.parent ?? tmpdir();
  }

  /** Fresh scratch directory (e.g. for MULTIWAN_ROOT), removed on destroy. */
  get root(): string {
    return this.scratch;
  }

  /** Builds the namespaces and starts the server. Call destroy() even if this throws. */
  async build(): Promise<void> {
    const t = this.topology;
    const all = [t.ns.gw, t.ns.lan, t.ns.net, ...t.ns.isp];
    this.scratch = await mkdtemp(path.join(this.parent, `${this.prefix}-root-`));
    // One at a time, recording each success: a half-built lab must be torn down, but a name that
    // already existed (`ip netns add` fails on it) is someone else's and must not be.
    for (const name of all) {
      await run(["ip", "netns", "add", name], { check: true });
      this.created.push(name);
    }
    await Promise.all([...earlySysctls(t)].map(([ns, kv]) => run(nsArgv(ns, ["sysctl", "-q", "-w", ...kv]), { check: true })));
    await run(["ip", "-batch", "-"], { input: vethLines(t).join("\n") + "\n", check: true });
    await Promise.all([
      ...[...ipBatches(t)].map(([ns, lines]) => run(["ip", "-n", ns, "-batch", "-"], { input: lines.join("\n") + "\n", check: true })),
      ...t.links.map((l, i) => run(nsArgv(t.ns.isp[i], ["iptables-restore"]), { input: ispRules(l), check: true })),
      ...(t.ipv6 ? t.links.map((l, i) => run(nsArgv(t.ns.isp[i], ["ip6tables-restore"]), { input: ispRules6(l), check: true })) : []),
    ]);
    // Every link is up at both ends now, so IPv6 next hops are on connected routes.
    await Promise.all([...ip6Routes(t)].map(([ns, lines]) => run(["ip", "-n", ns, "-batch", "-"], { input: lines.join("\n") + "\n", check: true })));
    await Promise.all([...lateSysctls(t)].map(([ns, kv]) => run(nsArgv(ns, ["sysctl", "-q", "-w", ...kv]), { check: true })));
    const server = this.startAgent(t.ns.net, "serve", {
      addresses: [SERVER_ADDRESSES.primary, SERVER_ADDRESSES.secondary],
      tcpPorts: this.tcpPorts,
      udpPorts: this.udpPorts,
    }, SERVER_LIFETIME_MS);
    if (t.ipv6) await this.linksReady(all);
    // The agent's UDP sockets are IPv4 ones: the IPv6 server is TCP only.
    const server6 = t.ipv6
      ? this.startAgent(t.ns.net, "serve", { addresses: [SERVER_ADDRESSES6.primary, SERVER_ADDRESSES6.secondary], tcpPorts: this.tcpPorts, udpPorts: [] }, SERVER_LIFETIME_MS)
      : undefined;
    await Promise.all([server.waitFor("ready", 10_000), server6?.waitFor("ready", 10_000)]);
  }

  /**
   * Kills the lab's processes, deletes its namespaces and scratch directory. Idempotent; every step
   * is attempted, then the first problem (e.g. a namespace that would not go away) is thrown.
   */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    await this.release();
    const problems = await removeNamespaces(this.created);
    if (this.scratch) await rm(this.scratch, { recursive: true, force: true }).catch((e: Error) => problems.push(e.message));
    if (problems.length) throw new Error(`lab ${this.prefix} cleanup: ${problems.join("; ")}`);
  }

  /**
   * Ends the processes this lab started (server, traffic), leaving the namespaces and whatever runs
   * in them on its own (sshd, health daemons): the built-in lab hands itself over this way.
   */
  async release(): Promise<void> {
    await Promise.all([...this.processes].map((p) => p.kill()));
  }

  /** Runs argv (no shell) in a lab namespace, given as key ("gw", "isp1") or full name. */
  exec(ns: string, argv: readonly string[], opts?: ExecOptions): Promise<ExecResult> {
    return run(nsArgv(this.resolveNs(ns), argv), opts);
  }

  /** Runs a script with `sh -c` in a lab namespace. */
  sh(ns: string, script: string, opts?: ExecOptions): Promise<ExecResult> {
    return this.exec(ns, ["sh", "-c", script], opts);
  }

  /**
   * Upstream failure: the ISP router drops everything it would forward, both ways (IPv6 too in a
   * dual-stack lab; `family` breaks one of them only). The gateway's interface stays up and the ISP
   * router still answers on its own addresses.
   */
  async breakUplink(link: string, o: { family?: 4 | 6 } = {}): Promise<void> {
    const ns = this.ispNs(link);
    const todo = this.iptablesCommands(o.family).filter((cmd) => !this.broken.has(`${link} ${cmd}`));
    await Promise.all(todo.map(async (cmd) => {
      await run(nsArgv(ns, [cmd, "-I", "FORWARD", "1", ...BROKEN_RULE]), { check: true });
      this.broken.add(`${link} ${cmd}`);
    }));
  }

  /** Undoes breakUplink (of `family` only, if given). */
  async restoreUplink(link: string, o: { family?: 4 | 6 } = {}): Promise<void> {
    const ns = this.ispNs(link);
    const todo = this.iptablesCommands(o.family).filter((cmd) => this.broken.has(`${link} ${cmd}`));
    await Promise.all(todo.map(async (cmd) => {
      await run(nsArgv(ns, [cmd, "-D", "FORWARD", ...BROKEN_RULE]), { check: true });
      this.broken.delete(`${link} ${cmd}`);
    }));
  }

  /**
   * Packets `link`'s ISP router dropped because their source was neither the gateway's address on
   * the link nor (IPv6) in the link network or the delegated prefix: BCP38's counter per family.
   */
  async bcp38Drops(link: string): Promise<{ v4: number; v6: number }> {
    const ns = this.ispNs(link);
    const v4 = (await run(nsArgv(ns, ["iptables", "-nvxL", "FORWARD"]), { check: true })).stdout
      .split("\n").find((l) => l.includes(ISP_CUSTOMER_IF) && l.includes("!"));
    const v6 = this.ipv6
      ? (await run(nsArgv(ns, ["ip6tables", "-nvxL", BCP38_CHAIN6]), { check: true })).stdout.split("\n").find((l) => /\sDROP\s/.test(l))
      : undefined;
    const count = (line: string | undefined) => Number(line?.trim().split(/\s+/)[0] ?? 0);
    return { v4: count(v4), v6: count(v6) };
  }

  /**
   * Slow or lossy pings through `link` (this kernel has no netem): its ISP router drops `lossPercent`
   * % of the echo requests it forwards, at random, and the internet answers those that arrive through
   * the link `delayMs` late (lab/echo-delay.py instead of the kernel). Only echoes are touched:
   * enough for the health probes, which time round trips; all other traffic goes as before.
   * Replaces the link's previous impairment; `{}` removes it.
   */
  async impairEchoes(link: string, o: EchoImpairment): Promise<void> {
    const isp = this.ispNs(link);
    const { delayMs = 0, lossPercent = 0 } = o;
    if (!Number.isInteger(delayMs) || delayMs < 0) throw new Error(`delayMs must be a whole number of milliseconds, got ${delayMs}`);
    if (!(lossPercent >= 0 && lossPercent <= 100)) throw new Error(`lossPercent must be 0..100, got ${lossPercent}`);
    const old = this.impairments.get(link) ?? {};
    const now: Impairment = {};
    this.impairments.set(link, now);
    if (old.loss) await run(nsArgv(isp, ["iptables", "-D", "FORWARD", ...old.loss]), { check: true });
    if (old.delay) {
      // The kernel answers at once again; the responder still sends the late answers it owes, so
      // the change costs no echo.
      await run(nsArgv(this.ns.net, ["iptables", "-D", "OUTPUT", ...old.delay.rule]), { check: true });
      await old.delay.responder.kill(old.delay.ms + 1000);
    }
    if (lossPercent > 0) {
      const rule = echoLossRule(lossPercent);
      await run(nsArgv(isp, ["iptables", "-I", "FORWARD", "1", ...rule]), { check: true });
      now.loss = rule;
    }
    if (delayMs > 0) {
      const netIf = this.topology.upstreams[this.links.findIndex((l) => l.name === link)].netInterface;
      const argv = ["python3", ECHO_DELAY, netIf, String(delayMs), String(DELAYED_ECHO_MARK), String(ECHO_DELAY_LIFETIME_MS / 1000)];
      const responder = this.spawn(this.ns.net, argv, { maxLifetimeMs: ECHO_DELAY_LIFETIME_MS });
      for (let i = 0; i < 250 && responder.running && !responder.recentOutput.includes("ready"); i++) await sleep(20);
      if (!responder.recentOutput.includes("ready")) {
        await responder.kill();
        throw new Error(`echo-delay.py did not get ready: ${responder.recentOutput.trim()}`);
      }
      const rule = delayedEchoRule(netIf);
      await run(nsArgv(this.ns.net, ["iptables", "-I", "OUTPUT", "1", ...rule]), { check: true });
      now.delay = { responder, rule, ms: delayMs };
    }
  }

  /**
   * `count` more client addresses on the LAN, from .10 up (lanInfo's own are .2-.9): the sources of
   * many LAN clients (ConnectOptions.sources). They go with the lab.
   */
  async addClientAddresses(count: number): Promise<string[]> {
    const first = 10 + this.addedClients;
    if (!Number.isInteger(count) || count < 1 || first + count > 255) throw new Error(`no room for ${count} more client addresses on the LAN`);
    const base = this.lanInfo.gatewayAddress.replace(/\.\d+$/, "");
    const addresses = Array.from({ length: count }, (_, i) => `${base}.${first + i}`);
    const lines = addresses.map((a) => `addr add ${a}/${this.lanInfo.network.split("/")[1]} dev ${CLIENT_IF}\n`).join("");
    await run(["ip", "-n", this.ns.lan, "-batch", "-"], { input: lines, check: true });
    this.addedClients += count;
    return addresses;
  }

  /**
   * What `link`'s ISP router did with the IPv6 packets its customer sent (dual-stack labs): forwarded
   * from the link network, forwarded from the delegated prefix, dropped (BCP38). Packet counters
   * since the lab was built; breakUplink's drops come before these and are not counted.
   */
  async forwarded6(link: string): Promise<{ fromLink: number; fromPrefix: number; dropped: number }> {
    const info = this.links.find((l) => l.name === link);
    const ns = this.ispNs(link);
    if (!info?.prefix6) throw new Error(`lab ${this.prefix} is not dual-stack`);
    const rules = (await run(nsArgv(ns, ["ip6tables", "-nvxL", BCP38_CHAIN6]), { check: true })).stdout
      .split("\n").map((l) => l.trim().split(/\s+/)).filter((f) => /^\d+$/.test(f[0]));
    const count = (match: (f: string[]) => boolean) => Number(rules.find(match)?.[0] ?? NaN);
    return {
      fromLink: count((f) => f[2] === "RETURN" && f[7] === info.subnet6),
      fromPrefix: count((f) => f[2] === "RETURN" && f[7] === info.prefix6),
      dropped: count((f) => f[2] === "DROP"),
    };
  }

  /**
   * The link an address the server saw belongs to, else null: the gateway's IPv4 address on it, or
   * (IPv6) its address6 on it (masquerade) or any address in its delegated prefix (npt, none).
   */
  linkOf(address: string | null): traffic.LinkName | null {
    if (!address) return null;
    const link = address.includes(":")
      ? this.links.find((l) => (l.address6 !== undefined && inPrefix6(address, `${l.address6}/128`)) || (l.prefix6 !== undefined && inPrefix6(address, l.prefix6)))
      : this.links.find((l) => l.address === address);
    return link ? link.name : null;
  }

  openConnections(n: number, o?: traffic.ConnectOptions): Promise<traffic.ConnectionResult[]> {
    return traffic.openConnections(this.trafficContext(), n, o);
  }

  longLived(count: number, o?: traffic.LongLivedOptions): Promise<traffic.LongLivedHandle> {
    return traffic.longLived(this.trafficContext(), count, o);
  }

  udpFlow(o?: traffic.UdpFlowOptions): Promise<traffic.UdpFlowHandle> {
    return traffic.udpFlow(this.trafficContext(), o);
  }

  shares(results: readonly traffic.ConnectionResult[]): Record<string, number> {
    return traffic.shares(this.links.map((l) => l.name), results);
  }

  connectFromServer(o: traffic.InboundOptions): Promise<traffic.InboundResult> {
    return traffic.connectFromServer(this.trafficContext(), o);
  }

  /** A TCP listener (greets with the peer address, echoes lines) in any lab namespace. */
  listen(ns: string, o: traffic.ListenOptions): Promise<traffic.ListenerHandle> {
    return traffic.listen(this.trafficContext(), this.resolveNs(ns), o);
  }

  /**
   * Starts a long-running process (e.g. sshd -D, or the health daemon in the foreground) in a lab
   * namespace; destroy() kills it. Use exec() for commands that finish.
   */
  spawn(ns: string, argv: readonly string[], opts: { env?: NodeJS.ProcessEnv; maxLifetimeMs?: number } = {}): BackgroundProcess {
    return this.track(new BackgroundProcess(nsArgv(this.resolveNs(ns), argv), { maxLifetimeMs: opts.maxLifetimeMs ?? 30 * 60_000, env: opts.env }));
  }

  /** PIDs of the processes the lab started that still run (server, listeners, traffic, spawn()). */
  pids(): number[] {
    return [...this.processes].map((p) => p.pid);
  }

  private startAgent(ns: string, mode: AgentMode, args: object, maxLifetimeMs: number): AgentProcess {
    const agent = new AgentProcess(ns, mode, args, maxLifetimeMs);
    this.track(agent.process);
    return agent;
  }

  private track(p: BackgroundProcess): BackgroundProcess {
    if (this.destroyed) {
      void p.kill();
      throw new Error(`lab ${this.prefix} is destroyed`);
    }
    this.processes.add(p);
    void p.exited.then(() => this.processes.delete(p));
    return p;
  }

  private trafficContext(): traffic.TrafficContext {
    return {
      ns: { lan: this.ns.lan, net: this.ns.net },
      serverAddress: this.serverAddress,
      serverAddress6: this.ipv6 ? this.serverAddress6 : undefined,
      resolveNs: (ns) => this.resolveNs(ns),
      linkOf: (a) => this.linkOf(a),
      startAgent: (ns, mode, args, ms) => this.startAgent(ns, mode, args, ms),
    };
  }

  private resolveNs(ns: string): string {
    if (Object.hasOwn(this.ns, ns)) return (this.ns as unknown as Record<string, string>)[ns];
    // Full names are accepted only for this lab's own namespaces.
    if (Object.values(this.ns).includes(ns)) return ns;
    throw new Error(`not a namespace of lab ${this.prefix}: ${ns}`);
  }

  /**
   * Until the kernel has taken every veth's carrier into account (its link watcher runs at most
   * once a second): until then an interface reads NO-CARRIER/DOWN and drops what it sends, so the
   * first neighbour solicitation of a fresh lab went unanswered for a second. Bounded to 3 s.
   */
  private async linksReady(namespaces: readonly string[]): Promise<void> {
    const notReady = async () => {
      const lists = await Promise.all(namespaces.map((ns) => run(["ip", "-n", ns, "-o", "link", "show"], { check: true })));
      return lists.flatMap((r) => r.stdout.split("\n").filter((l) => l.includes("@") && !/ state UP /.test(l)).map((l) => l.split(":")[1].trim()));
    };
    const deadline = Date.now() + 3000;
    let waiting = await notReady();
    while (waiting.length && Date.now() < deadline) {
      await sleep(25);
      waiting = await notReady();
    }
    if (waiting.length) throw new Error(`lab ${this.prefix}: links not up after 3 s: ${waiting.join(" ")}`);
  }

  /** The iptables commands of the lab's families, or of `family` only. */
  private iptablesCommands(family?: 4 | 6): string[] {
    if (family === 6 && !this.ipv6) throw new Error(`lab ${this.prefix} is not dual-stack`);
    if (family) return [family === 6 ? "ip6tables" : "iptables"];
    return this.ipv6 ? ["iptables", "ip6tables"] : ["iptables"];
  }

  private ispNs(link: string): string {
    if (!this.links.some((l) => l.name === link)) throw new Error(`no link ${link} in lab ${this.prefix}`);
    return this.resolveNs(link);
  }
}

/**
 * Kills every process inside the namespaces (e.g. a health daemon apply.sh detached, which would keep
 * a deleted namespace alive), then deletes them; returns what could not be removed. `ip netns pids`
 * lists only processes inside these namespaces, which belong to the lab alone.
 */
export async function removeNamespaces(names: readonly string[]): Promise<string[]> {
  // Listed again after each kill: a process may fork (a daemon's round) between the listing and
  // the kill, and its child would go on writing into the lab's root.
  const strays: number[] = [];
  for (let pass = 0; pass < 5; pass++) {
    const found: number[] = [];
    for (const ns of names) {
      const { stdout } = await run(["ip", "netns", "pids", ns], { timeoutMs: 5000 });
      found.push(...stdout.split(/\s+/).filter(Boolean).map(Number));
    }
    if (!found.length) break;
    strays.push(...found);
    for (const pid of found) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
    for (let i = 0; i < 40 && found.some(isRunning); i++) await sleep(50);
  }
  const problems: string[] = [];
  if (names.length) {
    // -force: keep deleting the others if one fails.
    await run(["ip", "-force", "-batch", "-"], { input: names.map((n) => `netns del ${n}\n`).join("") });
    const kept = (await namespaces()).filter((n) => names.includes(n));
    if (kept.length) problems.push(`namespaces not deleted: ${kept.join(" ")}`);
  }
  const survivors = strays.filter(isRunning);
  if (survivors.length) problems.push(`processes still running: ${survivors.join(" ")}`);
  return problems;
}

/** Every network namespace of the host. */
export async function namespaces(): Promise<string[]> {
  return (await run(["ip", "netns", "list"])).stdout.split("\n").map((l) => l.split(" ")[0]).filter(Boolean);
}

/** Builds a lab; on failure, tears down whatever was built before rethrowing. */
export async function createLab(options: LabOptions = {}): Promise<Lab> {
  const lab = new Lab(options);
  try {
    await lab.build();
  } catch (e) {
    await lab.destroy().catch((cleanup: Error) => console.error(cleanup.message));
    throw e;
  }
  return lab;
}

/** Runs fn against a fresh lab and always destroys it, whether fn resolves or throws. */
export async function withLab<T>(options: LabOptions, fn: (lab: Lab) => Promise<T>): Promise<T> {
  const lab = await createLab(options);
  let result: T;
  try {
    result = await fn(lab);
  } catch (e) {
    // The test's own failure is the news; a cleanup problem on top of it only goes to stderr.
    await lab.destroy().catch((cleanup: Error) => console.error(cleanup.message));
    throw e;
  }
  await lab.destroy();
  return result;
}
