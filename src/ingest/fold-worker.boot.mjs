// Boots the fold worker: registers tsx in this thread, then loads the TypeScript entry.
import { register } from 'tsx/esm/api';
register();
await import('./fold-worker.ts');
