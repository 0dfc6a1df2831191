// Found by the chaos suite (seed 20261207, round 1): a gateway deleted right after an API server restart
// got 404 because the custom resources were not served yet, the suite took it for "already gone", and
// the gateway stayed in the API while the suite's world had it deleted (the round "did not converge").
// A 404 means the object is gone only when its Status names the object (the product's rule too: see
// test/controller/not-served.test.ts against the real server).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ApiException, isObjectGone, isUnserved } from './client.ts';

describe('isObjectGone', () => {
  it('a NotFound Status that names the object: gone', () => {
    const body = { kind: 'Status', status: 'Failure', reason: 'NotFound', code: 404, details: { name: 'gw-p0', group: 'network.deckhouse.io', kind: 'egressgateways' } };
    assert.equal(isObjectGone(new ApiException(404, 'DELETE …: egressgateways "gw-p0" not found', body, {}), 'gw-p0'), true);
  });

  it('a 404 for a resource the restarting server does not serve yet: not known to be gone', () => {
    const body = { kind: 'Status', status: 'Failure', reason: 'NotFound', code: 404, message: 'the server could not find the requested resource', details: {} };
    assert.equal(isObjectGone(new ApiException(404, 'DELETE …: the server could not find the requested resource', body, {}), 'gw-p0'), false);
    assert.equal(isObjectGone(new ApiException(404, 'DELETE …: 404 page not found', '404 page not found\n', {}), 'gw-p0'), false);
    assert.equal(isObjectGone(new ApiException(503, 'DELETE …: unavailable', undefined, {}), 'gw-p0'), false);
    assert.equal(isUnserved(new ApiException(404, 'GET …: 404 page not found', '404 page not found\n', {})), true);
    assert.equal(isUnserved(new ApiException(503, 'GET …: unavailable', undefined, {})), false);
  });

  it('a Status naming another object, or given as a JSON string (the generated APIs)', () => {
    const body = { kind: 'Status', reason: 'NotFound', code: 404, details: { name: 'gw-p1' } };
    assert.equal(isObjectGone(new ApiException(404, 'x', body, {}), 'gw-p0'), false);
    assert.equal(isObjectGone(new ApiException(404, 'x', body, {})), true);
    assert.equal(isObjectGone(new ApiException(404, 'x', JSON.stringify(body), {}), 'gw-p1'), true);
    assert.equal(isUnserved(new ApiException(404, 'x', body, {})), false);
  });
});
