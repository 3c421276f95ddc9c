import { useEffect } from "react";
import { useQueryClient } from "@tanstack/react-query";
import { useStore } from "./store";
import { navigate, usePath } from "./router";
import { connectLive } from "./live";
import { Login } from "./pages/Login";
import { Live } from "./pages/Live";
import { Playback } from "./pages/Playback";
import { Heatmap } from "./pages/Heatmap";
import { Monitoring } from "./pages/Monitoring";

const PAGES = [
  { path: "/live", label: "Live" },
  { path: "/playback", label: "Playback" },
  { path: "/heatmap", label: "Heatmap" },
  { path: "/monitoring", label: "Monitoring", admin: true },
];

export function App() {
  const auth = useStore((s) => s.auth);
  const socket = useStore((s) => s.socket);
  const logout = useStore((s) => s.logout);
  const path = usePath();
  const queries = useQueryClient();

  useEffect(() => {
    if (!auth) {
      queries.clear();
      return;
    }
    const s = connectLive(auth.accessToken);
    return () => {
      s.disconnect();
      useStore.getState().setSocket("off");
    };
  }, [auth, queries]);

  useEffect(() => {
    if (auth && (path === "/" || path === "/login")) navigate("/live");
  }, [auth, path]);

  if (!auth) return <Login />;
  const isAdmin = auth.user.role === "admin";
  let page = <Live />;
  if (path === "/playback") page = <Playback />;
  else if (path === "/heatmap") page = <Heatmap />;
  else if (path === "/monitoring") page = isAdmin ? <Monitoring /> : <p className="pad">Admins only.</p>;

  return (
    <div className="app">
      <header>
        <strong className="brand">FleetPulse</strong>
        <nav>
          {PAGES.filter((p) => !p.admin || isAdmin).map((p) => (
            <a
              key={p.path}
              href={p.path}
              className={path === p.path || (p.path === "/live" && path === "/") ? "active" : ""}
              onClick={(e) => {
                e.preventDefault();
                navigate(p.path);
              }}
            >
              {p.label}
            </a>
          ))}
        </nav>
        <span className="spacer" />
        <span className={`feed feed-${socket}`} data-testid="feed-status">
          feed: {socket === "refused" ? "polling (no socket)" : socket}
        </span>
        <span className="who" data-testid="who">
          {auth.user.email} · {auth.user.tenantId} · {auth.user.role}
        </span>
        <button onClick={logout}>Log out</button>
      </header>
      <main>{page}</main>
    </div>
  );
}
