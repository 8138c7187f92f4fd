// Reading the PEM files named in tls / server_tls / nodes[].tls, with errors that name the config key.
import fs from 'node:fs';
import tls from 'node:tls';

/** A TLS setting that cannot be used; `key` is the config key path (e.g. "tls.cert"). */
export class TlsConfigError extends Error {
  constructor(
    readonly key: string,
    why: string,
  ) {
    super(`${key}: ${why}`);
  }
}

/** The file's contents; throws TlsConfigError naming `key` when it cannot be read or holds no PEM block. */
export function readPem(file: string, key: string): Buffer {
  let data: Buffer;
  try {
    data = fs.readFileSync(file);
  } catch (err) {
    throw new TlsConfigError(key, `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  if (!data.includes('-----BEGIN ')) throw new TlsConfigError(key, `${file} holds no PEM data`);
  return data;
}

/** tls.createSecureContext, with OpenSSL's complaint (bad key, key not matching the certificate …) named after `key`. */
export function secureContext(options: tls.SecureContextOptions, key: string): tls.SecureContext {
  try {
    return tls.createSecureContext(options);
  } catch (err) {
    throw new TlsConfigError(key, (err as Error).message);
  }
}
