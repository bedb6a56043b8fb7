// Live progress, one line per item: redrawn in place on a terminal, plain lines otherwise (CI logs).
export type Progress = (item: string, text: string) => void;

export function progress(items: readonly string[], out: NodeJS.WriteStream = process.stderr): Progress {
  const width = Math.max(...items.map((i) => i.length), 1);
  const line = (item: string, text: string) => `${item.padEnd(width)}  ${text}`;
  if (!out.isTTY) return (item, text) => out.write(`${line(item, text)}\n`);
  const lines = new Map(items.map((i) => [i, "waiting"]));
  const draw = () => {
    for (const [item, text] of lines) out.write(`\x1b[2K${line(item, text).slice(0, (out.columns || 100) - 1)}\n`);
  };
  draw();
  return (item, text) => {
    lines.set(item, text);
    out.write(`\x1b[${lines.size}F`); // back to the block's first line
    draw();
  };
}
