// A throwaway Unix user on this machine (users are shared by every namespace), as a gateway's
// non-root admin account: optionally allowed NOPASSWD sudo by its own sudoers.d file. remove()
// deletes the user and that file.
import { rm, writeFile } from "node:fs/promises";
import { run } from "./exec";

export interface UnixUser {
  name: string;
  /** Allow `sudo -n` for everything (NOPASSWD), or take that away again. */
  allowSudo(allowed: boolean): Promise<void>;
  remove(): Promise<void>;
}

export async function createUnixUser(name: string): Promise<UnixUser> {
  if (!/^mwt-[a-z0-9-]{1,27}$/.test(name)) throw new Error(`refusing user ${name}: not one of ours (mwt-…)`);
  const sudoers = `/etc/sudoers.d/${name}`;
  // Home "/" (no chdir warning on every session); password "*": no password, yet not locked,
  // which sshd without PAM would refuse.
  await run(["useradd", "--no-create-home", "--home-dir", "/", "--shell", "/bin/sh", "--password", "*", name], { check: true });
  return {
    name,
    async allowSudo(allowed) {
      if (!allowed) return rm(sudoers, { force: true });
      await writeFile(sudoers, `${name} ALL=(root) NOPASSWD: ALL\n`, { mode: 0o440 });
      await run(["visudo", "-cqf", sudoers], { check: true });
    },
    async remove() {
      await rm(sudoers, { force: true });
      await run(["userdel", name]);
    },
  };
}
