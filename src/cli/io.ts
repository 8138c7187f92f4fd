// What a CLI command writes to: process.stdout/stderr when run, string collectors in unit tests.

export interface Output {
  write(chunk: string): unknown;
}

export interface CommandIo {
  stdout: Output;
  stderr: Output;
}
