// Starts GraphiQL (vendored UMD build, loaded before this script) against
// this server: queries and mutations over HTTP at /graphql, subscriptions over
// graphql-transport-ws at /graphql/ws. GraphiQL sends the Headers pane with
// every HTTP request and as the WebSocket's connection_init payload, which is
// where plangraph reads `Authorization` on sockets.

// GraphiQL's dialogs add a <style> element to lock scrolling; the page's
// Content-Security-Policy admits it only with this response's nonce, which
// GraphiQL's bundle reads from the global webpack convention.
window.__webpack_nonce__ = document.querySelector('meta[name="style-nonce"]')?.content || undefined;

const here = window.location;
const subscriptionUrl = new URL('/graphql/ws', here.href);
subscriptionUrl.protocol = here.protocol === 'https:' ? 'wss:' : 'ws:';

const fetcher = GraphiQL.createFetcher({
  url: new URL('/graphql', here.href).href,
  subscriptionUrl: subscriptionUrl.href,
});

const defaultQuery = `# plangraph's GraphiQL.
#
# Put your API key in the Headers pane below:
#   {"Authorization": "Bearer pg_…"}
# and run the query with Ctrl-Enter or ▶.
# Docs (top left) lists every type and field.

query Me {
  viewer {
    email
    displayName
  }
}
`;

ReactDOM.createRoot(document.getElementById('graphiql')).render(
  React.createElement(GraphiQL, {
    fetcher,
    defaultQuery,
    defaultEditorToolsVisibility: 'headers',
  }),
);
