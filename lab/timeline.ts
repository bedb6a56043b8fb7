// A failover timeline: new connections per second of the run, by link, and failures; as a text
// table and as an SVG bar chart for docs/.
import type { ConnectionResult } from "./lab";

export interface Second {
  second: number;
  byLink: Record<string, number>;
  failed: number;
}

export function timeline(results: ConnectionResult[], startAt: number, links: string[], seconds: number): Second[] {
  const bins = Array.from({ length: seconds }, (_, second) => ({ second, byLink: Object.fromEntries(links.map((l) => [l, 0])), failed: 0 }));
  for (const r of results) {
    const bin = bins[Math.floor((r.startedAt - startAt) / 1000)];
    if (!bin) continue;
    if (r.ok && r.link) bin.byLink[r.link]++;
    else bin.failed++;
  }
  return bins;
}

export function timelineTable(bins: Second[], links: string[]): string {
  const header = ["s", ...links, "failed"].map((h) => h.padStart(8)).join("");
  return [header, ...bins.map((b) => [b.second, ...links.map((l) => b.byLink[l]), b.failed].map((v) => String(v).padStart(8)).join(""))].join("\n");
}

const COLOURS = ["#3b7dd8", "#47a66b", "#e0a030", "#8a5cc2"];

/** Stacked bars per second (links, then failures in red), with the break and restore marked. */
export function timelineSvg(bins: Second[], links: string[], title: string, marks: { second: number; label: string }[]): string {
  const w = 24;
  const h = 8;
  const top = 40;
  const max = Math.max(...bins.map((b) => b.failed + links.reduce((a, l) => a + b.byLink[l], 0)), 1);
  const width = bins.length * w + 80;
  const height = max * h + top + 50;
  const base = top + max * h;
  const bars = bins.flatMap((b) => {
    let y = base;
    const parts = [...links.map((l, i) => [b.byLink[l], COLOURS[i % COLOURS.length]] as const), [b.failed, "#d04040"] as const];
    return parts.map(([n, colour]) => {
      y -= n * h;
      return n ? `<rect x="${50 + b.second * w}" y="${y}" width="${w - 4}" height="${n * h}" fill="${colour}"/>` : "";
    });
  });
  const lines = marks.map(
    (m) => `<line x1="${48 + m.second * w}" y1="${top - 10}" x2="${48 + m.second * w}" y2="${base}" stroke="#333" stroke-dasharray="4 3"/>` +
      `<text x="${52 + m.second * w}" y="${top - 12}" font-size="11">${m.label}</text>`,
  );
  const legend = [...links, "failed"].map((l, i) => {
    const colour = l === "failed" ? "#d04040" : COLOURS[i % COLOURS.length];
    return `<rect x="${50 + i * 90}" y="${base + 28}" width="10" height="10" fill="${colour}"/><text x="${64 + i * 90}" y="${base + 37}" font-size="11">${l}</text>`;
  });
  const axis = bins.filter((b) => b.second % 5 === 0).map((b) => `<text x="${50 + b.second * w}" y="${base + 16}" font-size="10">${b.second}s</text>`);
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="50" y="16" font-size="13">${title}</text>`,
    `<text x="4" y="${top + 4}" font-size="10">${max}/s</text>`,
    ...bars,
    ...lines,
    ...axis,
    ...legend,
    `</svg>`,
  ].join("\n");
}
