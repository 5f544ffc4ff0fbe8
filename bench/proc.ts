/** CPU seconds (user + system) a process has used so far, from Linux /proc; 0 where that is unavailable. */
import { readFileSync } from 'node:fs';

/** Clock ticks per second of /proc/<pid>/stat and /proc/stat: 100 on Linux. */
export const USER_HZ = 100;

export function processCpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const x = f.slice(f.lastIndexOf(')') + 2).split(' ');
    return (Number(x[11]) + Number(x[12])) / USER_HZ; // utime + stime
  } catch {
    return 0;
  }
}
