/** The cfssl backend: `cfssl gencert` from a rendered CSR JSON and ca-config.json. */
import { render } from '../render.ts';
import { formatHours } from '../duration.ts';
import type { KeyAlgorithm } from '../inventory.ts';
import { Recorder, certDir, signerFile, type Backend, type Issued, type SignRequest } from './backend.ts';
import type { Profile } from './plan.ts';

function keySpec(alg: KeyAlgorithm): { algo: string; size: number } {
  return alg === 'rsa-2048' ? { algo: 'rsa', size: 2048 } : { algo: 'ecdsa', size: 256 };
}

/** cfssl's names for the usages of each profile. */
function cfsslUsages(profile: Profile, alg: KeyAlgorithm): string[] {
  const base = alg.startsWith('rsa') ? ['digital signature', 'key encipherment'] : ['digital signature'];
  const eku = { ca: [], client: ['client auth'], server: ['server auth'], 'server-client': ['server auth', 'client auth'] }[profile];
  return [...base, ...eku];
}

interface CfsslOutput {
  cert?: string;
  key?: string;
  csr?: string;
}

/** cfssl 1.2.0 can exit 0 with an error on stderr and nothing on stdout; insist on real output. */
function parseOutput(stdout: string, stderr: string, wantKey: boolean): CfsslOutput {
  let out: CfsslOutput;
  try {
    out = JSON.parse(stdout) as CfsslOutput;
  } catch {
    throw new Error(`cfssl printed no certificate${stderr.trim() ? `: ${stderr.trim().split('\n').pop()}` : ''}`);
  }
  if (!out.cert || (wantKey && !out.key)) throw new Error('cfssl output lacks the certificate or the key');
  return out;
}

export const cfsslBackend: Backend = {
  name: 'cfssl',
  templateFor: (row) => (row.profile === 'ca' ? 'cfssl/ca-csr.json.hbs' : 'cfssl/csr.json.hbs'),
  async issue(req: SignRequest): Promise<Issued> {
    const { row } = req;
    const rec = new Recorder(certDir(req.pkiDir, row.id), row.id, req.log);
    const key = keySpec(req.keyAlgorithm);
    const expiry = formatHours(req.validityMs);
    let args: string[];
    if (row.profile === 'ca') {
      rec.write('csr.json', render(cfsslBackend.templateFor(row), { header: req.header, cn: row.cn, key, expiry }));
      args = req.reuseKey ? ['gencert', '-initca', '-ca-key', 'key.pem', 'csr.json'] : ['gencert', '-initca', 'csr.json'];
    } else {
      rec.write('csr.json', render(cfsslBackend.templateFor(row), {
        header: req.header, cn: row.cn, o: row.o, hosts: [...row.dnsNames, ...row.ips], key,
      }));
      rec.write('ca-config.json', render('cfssl/ca-config.json.hbs', {
        header: req.header, profile: row.profile, expiry, usages: cfsslUsages(row.profile, req.keyAlgorithm),
      }));
      args = ['gencert', '-ca', signerFile(req, 'cert.pem'), '-ca-key', signerFile(req, 'key.pem'),
        '-config', 'ca-config.json', '-profile', row.profile, 'csr.json'];
    }
    // Several cfssl processes run at once, one per core: each needs only one Go scheduler thread,
    // and a process that lives a tenth of a second needs no garbage collector (about 5% less CPU).
    const res = await rec.run('cfssl', args, 'cfssl-output.json', { env: { GOMAXPROCS: '1', GOGC: 'off' }, secret: true });
    const out = parseOutput(res.stdout, res.stderr, !req.reuseKey);
    rec.note('# hardway splits that JSON itself: .key -> key.pem (mode 0600), .cert -> cert.pem, .csr -> csr.pem');
    rec.note('# (by hand: pipe cfssl into `cfssljson -bare NAME` instead of writing cfssl-output.json;');
    rec.note('# hardway runs cfssl with GOMAXPROCS=1 GOGC=off because it runs one per core at the same time)');
    if (out.csr) rec.write('csr.pem', out.csr);
    return {
      keyPem: req.reuseKey ? undefined : out.key,
      certPem: out.cert!,
      transcript: rec.transcript,
      files: row.profile === 'ca' ? ['csr.json', 'csr.pem'] : ['csr.json', 'ca-config.json', 'csr.pem'],
    };
  },
};
