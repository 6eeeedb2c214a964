// Starts GOV.UK Frontend's components (character count, radios, error summary focus, ...).
import { initAll } from "/govuk-frontend/govuk-frontend.min.js";

initAll();
