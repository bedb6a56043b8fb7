// A minimal ustar writer: the bundle travels to the gateway as one tar stream on stdin, unpacked
// there by `tar -x` (GNU or busybox), so no file content ever appears in a command line.

/** Bytes of a ustar entry's name field; the config keeps every bundle file name within it. */
export const TAR_NAME_MAX = 100;

function header(name: string, size: number, mode: number): Buffer {
  const h = Buffer.alloc(512);
  const field = (offset: number, length: number, value: string) => h.write(value, offset, length, "ascii");
  const octal = (offset: number, length: number, value: number) => field(offset, length, value.toString(8).padStart(length - 1, "0") + "\0");
  if (Buffer.byteLength(name) > TAR_NAME_MAX) throw new Error(`tar: name longer than ${TAR_NAME_MAX} bytes: ${name}`);
  field(0, 100, name);
  octal(100, 8, mode);
  octal(108, 8, 0); // uid
  octal(116, 8, 0); // gid
  octal(124, 12, size);
  octal(136, 12, 0); // mtime: fixed, so the same bundle is the same stream
  field(148, 8, "        "); // checksum placeholder: spaces while summing
  field(156, 1, "0"); // regular file
  field(257, 6, "ustar\0");
  field(263, 2, "00");
  const sum = h.reduce((a, b) => a + b, 0);
  field(148, 8, sum.toString(8).padStart(6, "0") + "\0 ");
  return h;
}

/** Files (relative path → text) as a tar archive; `*.sh` files are executable. */
export function tarFiles(files: Record<string, string>): Buffer {
  const parts: Buffer[] = [];
  for (const name of Object.keys(files).sort()) {
    const body = Buffer.from(files[name], "utf8");
    parts.push(header(name, body.length, name.endsWith(".sh") ? 0o700 : 0o600), body, Buffer.alloc((512 - (body.length % 512)) % 512));
  }
  parts.push(Buffer.alloc(1024)); // end of archive
  return Buffer.concat(parts);
}
