// /docs: Swagger UI over the service's OpenAPI document (docs.json), every file from the service itself.
"use strict";

window.ui = SwaggerUIBundle({
  url: "docs.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
  validatorUrl: null,  // otherwise a badge image is fetched from validator.swagger.io
});
