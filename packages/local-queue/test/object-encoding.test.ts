// A putUrl upload sent with Content-Encoding: gzip (what tcw's uploader does for text) is stored decoded: its
// hashes are those of the content, as finishUpload and downloads expect.
import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type Harness, startHarness, taskcluster } from './helpers.js';

describe('local queue: content encoding of object uploads', () => {
  let h: Harness;
  beforeEach(async () => {
    h = await startHarness();
  });
  afterEach(async () => {
    await h.close();
  });

  const upload = async (name: string, body: Buffer, headers: Record<string, string>) => {
    const object = h.client('Object');
    const uploadId = taskcluster.slugid();
    const expires = taskcluster.fromNowJSON('1 day');
    const res = await object.createUpload(name, {
      projectId: 'none',
      uploadId,
      expires,
      proposedUploadMethods: { putUrl: { contentType: 'text/plain', contentLength: body.length } },
    });
    const put = await fetch(res.uploadMethod.putUrl.url, {
      method: 'PUT',
      headers: { ...res.uploadMethod.putUrl.headers, ...headers },
      body,
    });
    return { object, uploadId, put };
  };

  it('stores a gzip-encoded PUT decoded; finishUpload takes the hashes of the content', async () => {
    const content = Buffer.from('line of a task log\n'.repeat(5000));
    const sha256 = createHash('sha256').update(content).digest('hex');
    const { object, uploadId, put } = await upload('t/gz/log', gzipSync(content), {
      'content-encoding': 'gzip',
    });
    expect(put.status).toBe(200);
    await object.finishUpload('t/gz/log', { projectId: 'none', uploadId, hashes: { sha256 } });
    const download = await object.startDownload('t/gz/log', { acceptDownloadMethods: { simple: true } });
    const got = Buffer.from(await (await fetch(download.url)).arrayBuffer());
    expect(got.equals(content)).toBe(true);
  });

  it('refuses a body that is not the gzip it claims to be, and an unknown encoding', async () => {
    const bad = await upload('t/gz/bad', Buffer.from('not gzip at all'), { 'content-encoding': 'gzip' });
    expect(bad.put.status).toBe(400);
    expect(await bad.put.text()).toContain('not valid gzip');
    const br = await upload('t/gz/br', Buffer.from('x'), { 'content-encoding': 'br' });
    expect(br.put.status).toBe(400);
    expect(await br.put.text()).toContain('unsupported Content-Encoding br');
  });
});
