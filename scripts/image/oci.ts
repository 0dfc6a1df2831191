// An OCI image layout (https://github.com/opencontainers/image-spec/blob/main/image-layout.md) around one
// layer tarball, packed as an "OCI archive" (a tar of the layout: `podman load`, `skopeo copy
// oci-archive:`, `docker load` on Docker ≥ 25, `umoci unpack` after untar).
//
// Every byte is a function of the layer and the config: JSON with fixed key order, `gzip -n` (no name,
// no time stamp), and GNU tar with sorted names, one mtime and numeric root ownership.

import { createHash } from 'node:crypto';
import { createReadStream, mkdirSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { run } from './debian.ts';

export interface ImageConfig {
  /** SOURCE_DATE_EPOCH, seconds. */
  epoch: number;
  entrypoint: string[];
  cmd: string[];
  env: string[];
  user: string;
  workingDir: string;
  labels: Record<string, string>;
  /** Full reference (`registry/name:tag`), for the index annotations. */
  reference: string;
  createdBy: string;
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
}

export async function sha256File(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer);
  return h.digest('hex');
}

function blob(layout: string, data: string | Buffer, mediaType: string): Descriptor {
  const buf = typeof data === 'string' ? Buffer.from(data) : data;
  const hex = createHash('sha256').update(buf).digest('hex');
  writeFileSync(join(layout, 'blobs', 'sha256', hex), buf);
  return { mediaType, digest: `sha256:${hex}`, size: buf.length };
}

/** Writes the layout into `layout` (must not exist yet or be empty) from the uncompressed `layerTar`. */
export async function writeLayout(layout: string, layerTar: string, cfg: ImageConfig): Promise<{ manifest: Descriptor; layer: Descriptor; diffId: string }> {
  mkdirSync(join(layout, 'blobs', 'sha256'), { recursive: true });
  const diffId = `sha256:${await sha256File(layerTar)}`;
  const gz = join(layout, 'layer.tar.gz');
  // -n: no file name or time stamp in the gzip header; -6 is gzip's default, spelled out because it is
  // part of the output's definition.
  await run('sh', ['-c', `gzip -n -6 -c '${layerTar}' > '${gz}'`]);
  const layerHex = await sha256File(gz);
  renameSync(gz, join(layout, 'blobs', 'sha256', layerHex));
  const layer: Descriptor = { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: `sha256:${layerHex}`, size: statSync(join(layout, 'blobs', 'sha256', layerHex)).size };

  const created = new Date(cfg.epoch * 1000).toISOString().replace(/\.000Z$/, 'Z');
  const config = blob(
    layout,
    JSON.stringify({
      created,
      architecture: 'amd64',
      os: 'linux',
      config: { User: cfg.user, Env: cfg.env, Entrypoint: cfg.entrypoint, Cmd: cfg.cmd, WorkingDir: cfg.workingDir, Labels: cfg.labels },
      rootfs: { type: 'layers', diff_ids: [diffId] },
      history: [{ created, created_by: cfg.createdBy }],
    }),
    'application/vnd.oci.image.config.v1+json',
  );
  const manifest = blob(
    layout,
    JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config, layers: [layer] }),
    'application/vnd.oci.image.manifest.v1+json',
  );
  const tag = cfg.reference.slice(cfg.reference.lastIndexOf(':') + 1);
  writeFileSync(
    join(layout, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [{ ...manifest, annotations: { 'io.containerd.image.name': cfg.reference, 'org.opencontainers.image.ref.name': tag } }],
    }),
  );
  writeFileSync(join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  return { manifest, layer, diffId };
}

/** GNU tar options that make an archive a function of the files' contents, names and modes only. */
export function reproducibleTarArgs(epoch: number): string[] {
  return [
    '--sort=name',
    `--mtime=@${epoch}`,
    '--clamp-mtime',
    '--owner=0',
    '--group=0',
    '--numeric-owner',
    '--format=pax',
    '--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime',
  ];
}

/** Packs the layout directory into `archive` (a tar whose top level is the layout). */
export async function packArchive(layout: string, archive: string, epoch: number): Promise<void> {
  await run('tar', [...reproducibleTarArgs(epoch), '-C', layout, '-cf', archive, 'oci-layout', 'index.json', 'blobs']);
}
