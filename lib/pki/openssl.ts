/**
 * The openssl backend: `openssl genpkey`, `openssl req` from a rendered config, then `openssl ca`
 * (which, unlike `openssl x509 -days`, can set an exact end date, so validities match cfssl's).
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { render } from '../render.ts';
import type { KeyAlgorithm } from '../inventory.ts';
import { SECRET_MODE, writeFileAtomic } from '../fsutil.ts';
import { Recorder, certDir, signerFile, leafKeyUsage, validityWindow, type Backend, type Issued, type SignRequest } from './backend.ts';

export function genpkeyArgs(alg: KeyAlgorithm): string[] {
  return alg === 'rsa-2048'
    ? ['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048']
    : ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-pkeyopt', 'ec_param_enc:named_curve'];
}

/** GeneralizedTime as `openssl ca -startdate/-enddate` takes it: YYYYMMDDHHMMSSZ. */
function asn1Time(d: Date): string {
  return `${d.toISOString().replace(/[-:T]/g, '').slice(0, 14)}Z`;
}

export const opensslBackend: Backend = {
  name: 'openssl',
  templateFor: (row) => (row.profile === 'ca' ? 'openssl/ca.cnf.hbs' : row.profile === 'client' ? 'openssl/client.cnf.hbs' : 'openssl/server.cnf.hbs'),
  async issue(req: SignRequest): Promise<Issued> {
    const { row } = req;
    const dir = certDir(req.pkiDir, row.id);
    const rec = new Recorder(dir, row.id, req.log);
    const isCa = row.profile === 'ca';
    rec.write('openssl.cnf', render(opensslBackend.templateFor(row), {
      header: req.header, cn: row.cn, o: row.o, usages: row.usages, keyUsage: leafKeyUsage(req.keyAlgorithm),
      dnsNames: row.dnsNames, ips: row.ips,
    }));

    let keyPem: string | undefined;
    if (!req.reuseKey) {
      const key = await rec.run('openssl', genpkeyArgs(req.keyAlgorithm), 'key.pem', { secret: true });
      keyPem = key.stdout;
      // `openssl req` reads the key from disk; it is written 0600 from the start (made durable
      // when the certificate is accepted).
      writeFileAtomic(join(dir, 'key.pem'), keyPem, SECRET_MODE, false);
    }
    const csr = await rec.run('openssl', ['req', '-new', '-key', 'key.pem', '-config', 'openssl.cnf'], 'csr.pem');
    rec.write('csr.pem', csr.stdout);

    const { notBefore, notAfter } = validityWindow(req.now, req.validityMs);
    mkdirSync(join(dir, '.ca-db'), { recursive: true });
    writeFileSync(join(dir, '.ca-db', 'index.txt'), '');
    rec.note('mkdir -p .ca-db && : > .ca-db/index.txt');
    try {
      const signer = isCa ? ['-selfsign', '-keyfile', 'key.pem'] : ['-cert', signerFile(req, 'cert.pem'), '-keyfile', signerFile(req, 'key.pem')];
      const cert = await rec.run('openssl', [
        'ca', '-batch', '-config', 'openssl.cnf', ...signer, '-in', 'csr.pem',
        '-startdate', asn1Time(notBefore), '-enddate', asn1Time(notAfter), '-rand_serial', '-notext',
        '-extensions', isCa ? 'ca_ext' : 'leaf_ext',
      ], 'cert.pem');
      return { keyPem, certPem: cert.stdout, transcript: rec.transcript, files: ['openssl.cnf', 'csr.pem'] };
    } finally {
      rmSync(join(dir, '.ca-db'), { recursive: true, force: true });
      rec.note('rm -rf .ca-db');
    }
  },
};
