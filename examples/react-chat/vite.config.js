// Vite config for the chat. In `npm run dev` the page's /api calls go to the Python backend
// (backend.py, port 8000 unless BACKEND_URL says otherwise); the WebSocket goes straight to
// Switchboard at the URL the backend hands out with each login. `npm run build` writes
// dist/, which backend.py serves itself, so one origin is enough in production.
//
// Nothing here is specific to Switchboard: Vite bundles @onehop/client and @onehop/react as
// they come from npm (the eventemitter3 named import that breaks Node's ESM loader is
// resolved by Vite's CommonJS interop, in the dev server and in the build alike).
import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

const backend = process.env.BACKEND_URL || 'http://127.0.0.1:8000';

export default defineConfig({
  plugins: [react()],
  server: {
    proxy: { '/api': backend },
  },
});
