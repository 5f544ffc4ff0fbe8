/**
 * `tidemark certs --out DIR --nodes a,b,c [--hosts h1,h2] [--domain d1,d2] [--days N]`: a development CA
 * and certificates for mutual TLS (docs/security.md). Needs the `openssl` command (OpenSSL 1.1.1 or 3.x).
 *
 * Writes to DIR: `ca.crt` + `ca.key` (reused when both exist, so adding a node or renewing certificates
 * keeps the cluster's trust root), `<node>.crt` + `<node>.key` per node, `client.crt` + `client.key`.
 * A node certificate's SAN holds the node id, `<id>.<domain>` for each `--domain` (StatefulSet:
 * `--domain tidemark-peer,tidemark-peer.ns.svc.cluster.local`), every `--hosts` name, `localhost` and
 * 127.0.0.1: peers verify that the SAN names the host they dialled. Keys are ECDSA P-256, mode 0600.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { isValidNodeId } from '../cluster/config.js';

const USAGE = `Usage: tidemark certs --out DIR --nodes ID[,ID...] [--hosts NAME[,NAME...]] [--domain D[,D...]] [--days N]

Makes a development CA (DIR/ca.crt, DIR/ca.key; reused if present), a certificate per node
(DIR/<id>.crt, DIR/<id>.key) and a client certificate (DIR/client.crt, DIR/client.key) with openssl.
SAN of node <id>: <id>, <id>.<domain> for each --domain, each --hosts name, localhost, 127.0.0.1.`;

const DNS_NAME =
  /^(?=.{1,253}$)([A-Za-z0-9*]([-A-Za-z0-9_]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([-A-Za-z0-9_]{0,61}[A-Za-z0-9])?)*$/;
const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/;

function list(v: string | undefined): string[] {
  return (v ?? '')
    .split(',')
    .map((x) => x.trim())
    .filter((x) => x !== '');
}

function openssl(args: string[], cwd: string): void {
  const r = spawnSync('openssl', args, { cwd, encoding: 'utf8' });
  if (r.error !== undefined) {
    throw new Error(`cannot run openssl (${r.error.message}); tidemark certs needs the openssl command`);
  }
  if (r.status !== 0) throw new Error(`openssl ${args[0]} failed: ${r.stderr.trim()}`);
}

/** The SAN extension value for a node. */
export function sanOf(id: string, domains: readonly string[], hosts: readonly string[]): string {
  const names = [id, ...domains.map((d) => `${id}.${d}`), ...hosts, 'localhost', '127.0.0.1'];
  const uniq = [...new Set(names)];
  return uniq.map((n) => (IPV4.test(n) || n.includes(':') ? `IP:${n}` : `DNS:${n}`)).join(',');
}

export interface CertsOptions {
  out: string;
  nodes: string[];
  hosts?: string[];
  domains?: string[];
  days?: number;
}

/** Makes the CA (unless present) and the node and client certificates. Returns the files written. */
export function makeCerts(o: CertsOptions): string[] {
  const days = String(o.days ?? 365);
  mkdirSync(o.out, { recursive: true });
  const work = mkdtempSync(join(tmpdir(), 'tidemark-certs-'));
  const written: string[] = [];
  const key = (name: string) => {
    openssl(
      ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', join(o.out, name)],
      work,
    );
    chmodSync(join(o.out, name), 0o600);
    written.push(join(o.out, name));
  };
  try {
    const caCrt = join(o.out, 'ca.crt');
    const caKey = join(o.out, 'ca.key');
    if (!(existsSync(caCrt) && existsSync(caKey))) {
      key('ca.key');
      openssl(
        [
          'req',
          '-x509',
          '-new',
          '-key',
          caKey,
          '-out',
          caCrt,
          '-days',
          String(Math.max(Number(days), 3650)),
          '-subj',
          '/CN=Tidemark development CA',
          '-addext',
          'basicConstraints=critical,CA:TRUE',
          '-addext',
          'keyUsage=critical,keyCertSign,cRLSign',
        ],
        work,
      );
      written.push(caCrt);
    }
    const leaf = (name: string, cn: string, ext: string) => {
      key(`${name}.key`);
      const csr = join(work, `${name}.csr`);
      const extFile = join(work, `${name}.ext`);
      writeFileSync(extFile, ext);
      openssl(['req', '-new', '-key', join(o.out, `${name}.key`), '-subj', `/CN=${cn}`, '-out', csr], work);
      openssl(
        [
          'x509',
          '-req',
          '-in',
          csr,
          '-CA',
          caCrt,
          '-CAkey',
          caKey,
          '-set_serial',
          `0x${Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString('hex')}`,
          '-days',
          days,
          '-extfile',
          extFile,
          '-out',
          join(o.out, `${name}.crt`),
        ],
        work,
      );
      written.push(join(o.out, `${name}.crt`));
    };
    for (const id of o.nodes) {
      leaf(
        id,
        id,
        [
          'basicConstraints=critical,CA:FALSE',
          'keyUsage=critical,digitalSignature,keyEncipherment',
          // A node is a server (its ports) and a client (dialling peers).
          'extendedKeyUsage=serverAuth,clientAuth',
          `subjectAltName=${sanOf(id, o.domains ?? [], o.hosts ?? [])}`,
          '',
        ].join('\n'),
      );
    }
    leaf(
      'client',
      'tidemark-client',
      [
        'basicConstraints=critical,CA:FALSE',
        'keyUsage=critical,digitalSignature',
        'extendedKeyUsage=clientAuth',
        '',
      ].join('\n'),
    );
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return written;
}

export async function certs(argv: string[]): Promise<number> {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        out: { type: 'string' },
        nodes: { type: 'string' },
        hosts: { type: 'string' },
        domain: { type: 'string' },
        days: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    }));
  } catch (err) {
    console.error(`tidemark certs: ${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (values.help === true) {
    console.log(USAGE);
    return 0;
  }
  const nodes = list(values.nodes as string | undefined);
  const hosts = list(values.hosts as string | undefined);
  const domains = list(values.domain as string | undefined);
  const days = values.days === undefined ? 365 : Number(values.days);
  const bad =
    typeof values.out !== 'string' || values.out === ''
      ? '--out DIR is required'
      : nodes.length === 0
        ? '--nodes needs at least one node id'
        : nodes.find((n) => !isValidNodeId(n)) !== undefined
          ? `--nodes: invalid node id ${JSON.stringify(nodes.find((n) => !isValidNodeId(n)))}`
          : [...hosts, ...domains].find((h) => !DNS_NAME.test(h) && !IPV4.test(h)) !== undefined
            ? `invalid host or domain ${JSON.stringify([...hosts, ...domains].find((h) => !DNS_NAME.test(h) && !IPV4.test(h)))}`
            : !Number.isSafeInteger(days) || days < 1 || days > 3650
              ? `--days must be an integer in [1, 3650], got ${JSON.stringify(values.days)}`
              : nodes.includes('client') || nodes.includes('ca')
                ? '--nodes: "ca" and "client" name the CA and client files'
                : undefined;
  if (bad !== undefined) {
    console.error(`tidemark certs: ${bad}\n\n${USAGE}`);
    return 2;
  }
  try {
    const files = makeCerts({ out: values.out as string, nodes, hosts, domains, days });
    for (const f of files) console.log(f);
    return 0;
  } catch (err) {
    console.error(`tidemark certs: ${(err as Error).message}`);
    return 1;
  }
}
