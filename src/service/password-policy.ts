/**
 * Which new passwords are refused (docs/security.md "Passwords"): the most common ones, and the username itself.
 * The list is `@zxcvbn-ts/language-common` (MIT): 49,233 passwords from leaked-password corpora, most common first;
 * only its 17,950 of 8 characters or more can reach this check (PROTOCOL.md: passwords are 8–256 characters).
 */
import { dictionary } from '@zxcvbn-ts/language-common';

/** The refused passwords, lower case (the list is), built on first use: ~1.5 MiB of strings. */
let common: ReadonlySet<string> | undefined;

function commonPasswords(): ReadonlySet<string> {
  return (common ??= new Set(dictionary['passwords-common'] as readonly string[]));
}

/**
 * Why `password` may not be used by `username` (a sentence for `errMsg`), or undefined when it may. Compared
 * case-insensitively: `Password1` is as guessable as `password1`. `username` is the case-folded name.
 */
export function passwordProblem(password: string, username: string): string | undefined {
  const folded = password.toLowerCase();
  if (folded === username || folded.includes(username) && folded.length - username.length < 4) {
    return 'password: must not be (nearly) the username';
  }
  if (commonPasswords().has(folded)) return 'password: one of the most common passwords; choose another';
  return undefined;
}
