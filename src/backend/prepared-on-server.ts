// The named statements a server connection has prepared (pgsplit's names, with the Parse that made them), oldest use first, and their total size.
export class PreparedOnServer extends Map<string, Buffer> {
  /** Bytes of the Parse messages held (bounded by limits.max_prepared_bytes, see PreparedStatements.prepareOn). */
  bytes = 0;

  override set(name: string, parse: Buffer): this {
    const old = super.get(name);
    if (old !== undefined) this.bytes -= old.length;
    this.bytes += parse.length;
    return super.set(name, parse);
  }

  override delete(name: string): boolean {
    const old = super.get(name);
    if (old === undefined) return false;
    this.bytes -= old.length;
    return super.delete(name);
  }

  override clear(): void {
    this.bytes = 0;
    super.clear();
  }
}
