// The refused-password rule (src/service/password-policy.ts) and the stored-hash format (passwords.ts), alone.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { dictionary } from '@zxcvbn-ts/language-common';
import { passwordProblem } from '../../src/service/password-policy.ts';
import { hashPassword, needsRehash, verifyPassword } from '../../src/service/passwords.ts';

describe('passwordProblem', () => {
  it('refuses every password of 8+ characters among the 10,000 most common, in any case', () => {
    const top = (dictionary['passwords-common'] as string[]).slice(0, 10_000).filter((p) => p.length >= 8);
    assert.ok(top.length > 2000, `${top.length} of the top 10,000 can be typed at all`);
    for (const p of top) assert.match(passwordProblem(p, 'someone')!, /most common/, p);
    assert.match(passwordProblem('PassWord123', 'someone')!, /most common/);
  });

  it('refuses the username and the username with a short suffix or prefix', () => {
    for (const p of ['maximilian', 'MAXIMILIAN', 'maximilian1', 'maximilian!!!', '1maximilian']) {
      assert.match(passwordProblem(p, 'maximilian')!, /username/, p);
    }
  });

  it('accepts an uncommon password, the username inside a longer one included', () => {
    for (const p of ['correct horse battery', 'pw-maximilian-123', 'Zq8#wLm2vT']) assert.equal(passwordProblem(p, 'maximilian'), undefined, p);
  });
});

describe('stored hashes', () => {
  it('verify the right password only, carry their cost, and ask for a rehash below the current cost', async () => {
    const stored = await hashPassword('pw-hash-test', 10);
    assert.match(stored, /^scrypt\$10\$8\$1\$/);
    assert.equal(await verifyPassword('pw-hash-test', stored), true);
    assert.equal(await verifyPassword('pw-hash-tesT', stored), false);
    assert.deepEqual([needsRehash(stored, 10), needsRehash(stored, 11), needsRehash('md5$abc', 10)], [false, true, true]);
  });

  it('never match a malformed or absurdly costly hash (nothing is allocated for it)', async () => {
    for (const bad of ['', 'scrypt$10$8$1$c2FsdA', 'scrypt$40$8$1$c2FsdA$aGFzaA', 'scrypt$10$8$2$c2FsdA$aGFzaA', 'bcrypt$x$y$z$a$b']) {
      assert.equal(await verifyPassword('anything', bad), false, bad);
    }
  });
});
